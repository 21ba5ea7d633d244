-- Cache hits per LLM usage row (the Costs page shows them beside calls and tokens), and a
-- lookup of a task's usage (the task page shows what its LLM calls cost).
ALTER TABLE llm_usage ADD COLUMN cache_hits BIGINT NOT NULL DEFAULT 0;
CREATE INDEX llm_usage_task ON llm_usage (task_id);
