/* event_sourcing--1.0--1.1.sql: projections */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION event_sourcing UPDATE TO '1.1'" to load this file. \quit

--
-- Projection definitions and, for async projections, their checkpoints.
-- Written only by the es_*projection* functions (as the extension owner).
--
CREATE TABLE @extschema@.es_projection_defs (
    name            text COLLATE "C" NOT NULL,
    handler         regprocedure NOT NULL,
    event_types     text[] COLLATE "C",
    mode            text COLLATE "C" NOT NULL,
    reset           regprocedure,
    owner           regrole NOT NULL,
    position        bigint NOT NULL DEFAULT 0,
    status          text COLLATE "C" NOT NULL DEFAULT 'running',
    last_error      text,
    failed_position bigint,
    defined_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT es_projection_defs_pkey PRIMARY KEY (name),
    CONSTRAINT es_projection_defs_mode_check CHECK (mode IN ('inline', 'async')),
    CONSTRAINT es_projection_defs_status_check CHECK (status IN ('running', 'failed')),
    CONSTRAINT es_projection_defs_position_check CHECK (position >= 0)
);

COMMENT ON TABLE @extschema@.es_projection_defs IS
    'Projection definitions and async checkpoints; written by es_define_projection, es_projection_run, es_projection_skip, es_projection_rebuild. Query the es_projections view.';

--
-- Events an async projection skipped with es_projection_skip.
--
CREATE TABLE @extschema@.es_dead_letters (
    projection      text COLLATE "C" NOT NULL,
    event           @extschema@.es_events NOT NULL,
    error           text,
    time            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    position        bigint NOT NULL,
    CONSTRAINT es_dead_letters_pkey PRIMARY KEY (projection, position)
);

COMMENT ON TABLE @extschema@.es_dead_letters IS
    'Events that failed an async projection and were skipped with es_projection_skip: the projection, the event as its handler saw it, the error, when.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_projection_defs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_dead_letters', '');

--
-- Inline projections: every event es_append stores is dispatched to the
-- inline projections whose event_types match.  Rows inserted any other way
-- (pg_restore's COPY) are not dispatched.  ENABLE ALWAYS: dispatch does not
-- depend on session_replication_role.
--
CREATE FUNCTION @extschema@._es_dispatch_inline()
    RETURNS trigger
    AS 'MODULE_PATHNAME', 'es_dispatch_inline'
    LANGUAGE C;

CREATE TRIGGER es_events_inline_projections
    AFTER INSERT ON @extschema@.es_events
    FOR EACH ROW EXECUTE FUNCTION @extschema@._es_dispatch_inline();

ALTER TABLE @extschema@.es_events ENABLE ALWAYS TRIGGER es_events_inline_projections;

CREATE FUNCTION @extschema@.es_define_projection(name text, handler regprocedure,
                                                 event_types text[] DEFAULT NULL,
                                                 mode text DEFAULT 'inline',
                                                 reset regprocedure DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_define_projection'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_define_projection(text, regprocedure, text[], text, regprocedure) IS
    'Define a projection: handler(es_events) called for each event of event_types (NULL: all), inline (in the appending transaction) or async (from a checkpoint); reset() empties its read model for rebuilds';

CREATE FUNCTION @extschema@.es_drop_projection(name text)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_drop_projection'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_drop_projection(text) IS
    'Drop a projection and its dead letters (its read model tables are left alone)';

CREATE FUNCTION @extschema@.es_projection_run(name text DEFAULT NULL,
                                              max_events integer DEFAULT 1000)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_projection_run'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_projection_run(text, integer) IS
    'Apply up to max_events events after the checkpoint of an async projection (NULL: of each); returns how many were applied';

CREATE FUNCTION @extschema@.es_projection_rebuild(name text)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_projection_rebuild'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_projection_rebuild(text) IS
    'Call reset() and replay every matching event from the start; returns how many were applied';

CREATE FUNCTION @extschema@.es_projection_skip(name text)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_projection_skip'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_projection_skip(text) IS
    'Move the event a failed async projection stopped at to es_dead_letters and continue after it; returns its position';

CREATE FUNCTION @extschema@._es_projection_head()
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_projection_head'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@._es_projection_head() IS
    'Internal: the safe end of the global log for es_projections (NULL on a hot standby)';

CREATE VIEW @extschema@.es_projections AS
    SELECT p.name,
           p.mode,
           p.event_types,
           CASE p.mode WHEN 'inline' THEN h.head ELSE p.position END AS position,
           CASE WHEN h.head IS NULL THEN NULL
                WHEN p.mode = 'inline' OR h.head <= p.position THEN 0::bigint
                ELSE h.head - p.position END AS lag,
           p.status,
           p.last_error,
           p.failed_position,
           p.handler,
           p.reset,
           p.owner,
           p.defined_at,
           p.updated_at
      FROM @extschema@.es_projection_defs p,
           (SELECT @extschema@._es_projection_head() AS head) h;

COMMENT ON VIEW @extschema@.es_projections IS
    'Projections: mode, event types, position reached (inline: always the head), lag in positions behind the safe head, status (running/failed), last error';

REVOKE ALL ON TABLE @extschema@.es_projection_defs FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.es_dead_letters FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.es_projections FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._es_dispatch_inline() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_define_projection(text, regprocedure, text[], text, regprocedure) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_drop_projection(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_projection_run(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_projection_rebuild(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_projection_skip(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._es_projection_head() FROM PUBLIC;
