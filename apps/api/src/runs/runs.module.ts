import { Module } from '@nestjs/common';
import { RunsController } from './runs.controller';
import { RunsService } from './runs.service';
import { SubmissionRules } from './submission.rules';

/** /runs: a run's status, metric series, events and cancel; and the submission rules every run (single or in a sweep) passes. */
@Module({
  controllers: [RunsController],
  providers: [RunsService, SubmissionRules],
  exports: [RunsService, SubmissionRules],
})
export class RunsModule {}
