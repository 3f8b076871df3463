-- The test-only `widgets` resource's table: what a new resource's PostgreSQL migration looks
-- like (its declaration is in tests/widgets.rs; a test checks the two agree).
CREATE TABLE widgets (
    id              bigint PRIMARY KEY,
    modified_date   timestamptz NOT NULL,
    size            bigint NOT NULL,
    label           text,
    checked_at      timestamptz,
    active          boolean NOT NULL,
    extra           jsonb,
    deleted_at      timestamptz,
    synced_at       timestamptz NOT NULL,
    first_synced_at timestamptz NOT NULL
);
CREATE INDEX widgets_modified_date ON widgets (modified_date);
CREATE INDEX widgets_label ON widgets (label);
