-- The mark no longer claims "every id" at its instant: rows of one bulk update may commit later
-- with the same modified_date and higher ids. Versions before this one stored that claim as
-- mark_after_id = i64::MAX; it becomes "none confirmed" (NULL), so the next pass reads the
-- instant again from its first row. From here on mark_after_id is the highest id stored at
-- mark_modified_date, or NULL.
UPDATE sync_state SET mark_after_id = NULL WHERE mark_after_id = 9223372036854775807;
