-- A run's state transitions live on its row ('RECEIVED@1733380000.123;STARTED@…;SUCCESS@…'),
-- appended by the batch upsert: one row written per task instead of one per state change.
ALTER TABLE task_runs ADD COLUMN transitions TEXT NOT NULL DEFAULT '';
DROP TABLE task_transitions;
