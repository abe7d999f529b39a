/* event_sourcing--1.4--1.5.sql: stream lifecycle and data protection */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION event_sourcing UPDATE TO '1.5'" to load this file. \quit

--
-- The erasure audit: one row per deletion, truncation, redaction and
-- retention pass (src/lifecycle.c, src/retention.c) -- when, by whom, what,
-- why; never the removed data.  Append-only like es_events: the same
-- trigger refuses UPDATE, DELETE and TRUNCATE for every role.
--
CREATE SEQUENCE @extschema@.es_erasures_erasure_id_seq AS bigint;

CREATE TABLE @extschema@.es_erasures (
    erasure_id      bigint NOT NULL DEFAULT pg_catalog.nextval('@extschema@.es_erasures_erasure_id_seq'::pg_catalog.regclass),
    erased_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    role            name NOT NULL,
    session_role    name NOT NULL,
    operation       text NOT NULL,
    stream_id       text COLLATE "C",
    event_id        uuid,
    category        text COLLATE "C",
    from_version    bigint,
    to_version      bigint,
    event_count     bigint NOT NULL,
    paths           text[],
    reason          text,
    CONSTRAINT es_erasures_pkey PRIMARY KEY (erasure_id),
    CONSTRAINT es_erasures_operation_check
        CHECK (operation IN ('delete_stream', 'truncate_stream', 'redact_event', 'retention'))
);

ALTER SEQUENCE @extschema@.es_erasures_erasure_id_seq
    OWNED BY @extschema@.es_erasures.erasure_id;

COMMENT ON TABLE @extschema@.es_erasures IS
    'Append-only audit of every stream deletion, truncation, event redaction and retention pass: when, role, operation, what, how many, reason.';

CREATE TRIGGER es_erasures_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON @extschema@.es_erasures
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._es_refuse_change();

ALTER TABLE @extschema@.es_erasures ENABLE ALWAYS TRIGGER es_erasures_immutable;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_erasures', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_erasures_erasure_id_seq', '');

--
-- Retention policies per category (src/retention.c), each owned by the role
-- that set it first.
--
CREATE TABLE @extschema@.es_retention_policies (
    category        text COLLATE "C" NOT NULL,
    max_age         interval,
    max_count       bigint,
    owner           regrole NOT NULL,
    defined_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT es_retention_policies_pkey PRIMARY KEY (category),
    CONSTRAINT es_retention_policies_limit_check CHECK (max_age IS NOT NULL OR max_count IS NOT NULL),
    CONSTRAINT es_retention_policies_max_count_check CHECK (max_count >= 1)
);

COMMENT ON TABLE @extschema@.es_retention_policies IS
    'Retention policy per category: events older than max_age, and all but the newest max_count of each stream, are deleted by es_apply_retention.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_retention_policies', '');

--
-- The functions.  None is granted to PUBLIC: each needs its own GRANT.
--
CREATE FUNCTION @extschema@.es_delete_stream(stream_id text, expected_version bigint DEFAULT NULL,
                                            reason text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_delete_stream'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_delete_stream(text, bigint, text) IS
    'Removes every event and snapshot of a stream and leaves the tombstone $StreamDeleted at version n+1; returns n. Audited in es_erasures.';

CREATE FUNCTION @extschema@.es_truncate_stream(stream_id text, before_version bigint,
                                              reason text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_truncate_stream'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_truncate_stream(text, bigint, text) IS
    'Removes the events of a stream below before_version (the newest event always stays); returns how many. Audited in es_erasures.';

CREATE FUNCTION @extschema@.es_redact_event(event_id uuid, paths text[] DEFAULT NULL,
                                           reason text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_redact_event'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_redact_event(uuid, text[], text) IS
    'Erases paths (all of data when NULL; "metadata.x" for metadata) of a stored event in place, drops the snapshots built from it and appends $EventRedacted. Audited in es_erasures.';

CREATE FUNCTION @extschema@.es_set_retention(category text, max_age interval DEFAULT NULL,
                                            max_count bigint DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_set_retention'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_set_retention(text, interval, bigint) IS
    'Sets the retention policy of a category (both NULL: removes it).';

CREATE FUNCTION @extschema@.es_apply_retention(max_events integer DEFAULT 10000)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_apply_retention'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_apply_retention(integer) IS
    'Deletes up to max_events events that the retention policies no longer keep; returns how many. Audited in es_erasures.';

REVOKE ALL ON TABLE @extschema@.es_erasures FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.es_erasures_erasure_id_seq FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.es_retention_policies FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_delete_stream(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_truncate_stream(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_redact_event(uuid, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_set_retention(text, interval, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_apply_retention(integer) FROM PUBLIC;
