/* event_sourcing--1.4--1.5.sql: stream lifecycle and data protection; subscriptions */

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

--
-- Subscriptions: consumers outside the database (src/subscription.c,
-- src/subscription_read.c).  A definition per name, owned by the role that
-- defined it, and a checkpoint per member of its consumer group.
--
CREATE TABLE @extschema@.es_subscription_defs (
    name            text COLLATE "C" NOT NULL,
    category        text COLLATE "C",
    event_types     text[],
    start_position  bigint NOT NULL,
    group_size      integer NOT NULL,
    owner           regrole NOT NULL,
    defined_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT es_subscription_defs_pkey PRIMARY KEY (name),
    CONSTRAINT es_subscription_defs_start_check CHECK (start_position >= 0),
    CONSTRAINT es_subscription_defs_group_size_check CHECK (group_size BETWEEN 1 AND 1024)
);

CREATE TABLE @extschema@.es_subscription_members (
    name            text COLLATE "C" NOT NULL,
    member          integer NOT NULL,
    position        bigint NOT NULL,
    scanned_to      bigint NOT NULL DEFAULT 0,
    last_ack_at     timestamptz,
    -- moved on by a reset or resize: a session that read before it cannot
    -- acknowledge what it read (es_subscription_ack, 40001)
    epoch           integer NOT NULL DEFAULT 1,
    CONSTRAINT es_subscription_members_pkey PRIMARY KEY (name, member),
    CONSTRAINT es_subscription_members_name_fkey FOREIGN KEY (name)
        REFERENCES @extschema@.es_subscription_defs (name) ON DELETE CASCADE,
    CONSTRAINT es_subscription_members_position_check CHECK (position >= 0)
);

COMMENT ON TABLE @extschema@.es_subscription_defs IS
    'Subscriptions for consumers outside the database: filter, consumer group size, owner.';
COMMENT ON TABLE @extschema@.es_subscription_members IS
    'Checkpoint (last acknowledged position) of each member of each subscription.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_subscription_defs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_subscription_members', '');

CREATE FUNCTION @extschema@.es_define_subscription(name text, category text DEFAULT NULL,
                                                  event_types text[] DEFAULT NULL,
                                                  start_position bigint DEFAULT 0,
                                                  group_size integer DEFAULT 1)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_define_subscription'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.es_subscription_read(name text, max_count integer DEFAULT 100,
                                                member integer DEFAULT 0)
    RETURNS SETOF @extschema@.es_events
    AS 'MODULE_PATHNAME', 'es_subscription_read'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;

CREATE FUNCTION @extschema@.es_subscription_ack(name text, "position" bigint, member integer DEFAULT 0)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_subscription_ack'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.es_subscription_wait(name text, member integer DEFAULT 0,
                                                timeout_ms integer DEFAULT 10000)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'es_subscription_wait'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.es_subscription_reset(name text, "position" bigint, member integer DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_subscription_reset'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.es_alter_subscription(name text, group_size integer)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_alter_subscription'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.es_drop_subscription(name text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_drop_subscription'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.es_subscription_release(name text, member integer DEFAULT 0)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'es_subscription_release'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.es_subscription_member(stream_id text, group_size integer)
    RETURNS integer
    AS 'MODULE_PATHNAME', 'es_subscription_member'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@._es_subscription_lag(name text, member integer)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_subscription_lag'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE VIEW @extschema@.es_subscriptions AS
    SELECT d.name, m.member, d.group_size, m.position,
           @extschema@._es_subscription_lag(d.name, m.member) AS lag,
           m.last_ack_at, d.owner,
           pg_catalog.jsonb_build_object('category', d.category, 'event_types', d.event_types) AS filters
      FROM @extschema@.es_subscription_defs d
      JOIN @extschema@.es_subscription_members m ON m.name OPERATOR(pg_catalog.=) d.name;

COMMENT ON FUNCTION @extschema@.es_define_subscription(text, text, text[], bigint, integer) IS
    'Define a subscription: events of a category and/or event types, from start_position, for a consumer group of group_size members';
COMMENT ON FUNCTION @extschema@.es_subscription_read(text, integer, integer) IS
    'The next events after the member''s checkpoint that match and belong to it (the same again until acknowledged); takes the member''s lease';
COMMENT ON FUNCTION @extschema@.es_subscription_ack(text, bigint, integer) IS
    'Moves the member''s checkpoint forward to position: everything up to it is processed';
COMMENT ON FUNCTION @extschema@.es_subscription_wait(text, integer, integer) IS
    'Waits until the member has an event to read (true) or the timeout passes (false); waits for the member''s lease too';
COMMENT ON VIEW @extschema@.es_subscriptions IS
    'Subscriptions: one row per member, with its checkpoint, lag in events, last acknowledgement, owner and filters';

REVOKE ALL ON TABLE @extschema@.es_subscription_defs FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.es_subscription_members FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.es_subscriptions FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_define_subscription(text, text, text[], bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_subscription_read(text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_subscription_ack(text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_subscription_wait(text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_subscription_reset(text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_alter_subscription(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_drop_subscription(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_subscription_release(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_subscription_member(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._es_subscription_lag(text, integer) FROM PUBLIC;

--
-- Commands from clients (issue 13): es_execute with an expected version
-- (If-Match) and a command id (its events' ids derive from it, so a resent
-- command is recognised), read-your-writes.
--
-- es_execute(text, jsonb) becomes es_execute(text, jsonb, bigint, uuid)
-- with defaults (both could not exist: a two-argument call would be
-- ambiguous).  Its EXECUTE grants are carried over, and stay the user's:
-- a GRANT in an extension script is recorded as the extension's initial
-- privilege, which pg_dump leaves out (a restore would lose it), so the
-- initial privileges are set back to what a fresh install has.
CREATE FUNCTION @extschema@.es_execute(stream_id text, command jsonb,
                                      expected_version bigint DEFAULT NULL,
                                      command_id uuid DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_execute'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION @extschema@.es_execute(text, jsonb, bigint, uuid) FROM PUBLIC;
DO $$
DECLARE
    g record;
    fn pg_catalog.oid := '@extschema@.es_execute(text, jsonb, bigint, uuid)'::pg_catalog.regprocedure;
    fresh pg_catalog.aclitem[];
BEGIN
    SELECT p.proacl INTO fresh FROM pg_catalog.pg_proc p WHERE p.oid = fn;
    FOR g IN SELECT a.grantee, a.is_grantable
               FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
              WHERE p.oid = '@extschema@.es_execute(text, jsonb)'::pg_catalog.regprocedure
                AND a.privilege_type = 'EXECUTE'
                AND a.grantee <> p.proowner
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.es_execute(text, jsonb, bigint, uuid) TO %s%s',
                                  CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                                       ELSE pg_catalog.quote_ident(g.grantee::pg_catalog.regrole::text) END,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    UPDATE pg_catalog.pg_init_privs SET initprivs = fresh
     WHERE objoid = fn AND classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND objsubid = 0;
END
$$;
DROP FUNCTION @extschema@.es_execute(text, jsonb);

COMMENT ON FUNCTION @extschema@.es_execute(text, jsonb, bigint, uuid) IS
    'Fold the stream, decide(state, command), append the events; expected_version refuses (40001) when the stream moved; command_id makes a resent command an idempotent replay';

CREATE FUNCTION @extschema@.es_last_position()
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_last_position'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_last_position() IS
    'The global position of the last event this transaction appended (or, when none, this session''s last committed transaction); NULL when none';

CREATE FUNCTION @extschema@.es_projection_wait(name text, "position" bigint, timeout_ms integer DEFAULT 10000)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'es_projection_wait'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_projection_wait(text, bigint, integer) IS
    'Waits until the projection has applied everything up to position (true) or the timeout passes (false)';

CREATE FUNCTION @extschema@.es_subscription_wait_acked(name text, "position" bigint, timeout_ms integer DEFAULT 10000)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'es_subscription_wait_acked'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_subscription_wait_acked(text, bigint, integer) IS
    'Waits until every member of the subscription has acknowledged all of its events up to position (true) or the timeout passes (false)';

REVOKE ALL ON FUNCTION @extschema@.es_last_position() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_projection_wait(text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_subscription_wait_acked(text, bigint, integer) FROM PUBLIC;
