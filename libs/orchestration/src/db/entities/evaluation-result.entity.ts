import { Column, Entity, Index } from 'typeorm';
import { BaseEntity } from '../base.entity';

/** One method's row of an evaluation: the protocol's metrics, images and speed. Unique per method, so a redelivered job cannot add a second. */
@Entity({ name: 'evaluation_results' })
@Index('evaluation_results_evaluation_method_key', ['evaluationId', 'method'], { unique: true })
export class EvaluationResultEntity extends BaseEntity {
  @Column({ name: 'evaluation_id', type: 'uuid' })
  evaluationId!: string;

  /** The method's place in the request (the table's row order). */
  @Column({ type: 'integer' })
  position!: number;

  @Column({ type: 'text' })
  method!: string;

  /** Display name, e.g. 'ice [official head]'. */
  @Column({ type: 'text' })
  label!: string;

  /** Protocol column → value (null where a column does not apply to the method). */
  @Column({ type: 'jsonb' })
  metrics!: Record<string, number | null>;

  @Column({ type: 'integer' })
  images!: number;

  /** Null when the explainer's time rounded to zero (the library reports Infinity). */
  @Column({ name: 'images_per_second', type: 'double precision', nullable: true })
  imagesPerSecond!: number | null;

  @Column({ type: 'double precision' })
  seconds!: number;
}
