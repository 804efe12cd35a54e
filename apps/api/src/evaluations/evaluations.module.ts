import { Module } from '@nestjs/common';
import { EvaluationsController } from './evaluations.controller';
import { EvaluationsService } from './evaluations.service';

/** /evaluations: protocol evaluations of a finished run or a weights file, their result rows and saved maps. */
@Module({ controllers: [EvaluationsController], providers: [EvaluationsService] })
export class EvaluationsModule {}
