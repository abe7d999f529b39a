/* event_sourcing--1.1--1.2.sql: every definition has an owner and a search_path */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION event_sourcing UPDATE TO '1.2'" to load this file. \quit

--
-- Owners.  Every user callback (evolve, decide, upcast, handler, reset) runs
-- as its definition's owner, under SECURITY_RESTRICTED_OPERATION, with the
-- search_path the definition keeps (the definer's, captured when it was
-- defined, pg_temp last).  Changing, extending, dropping, running, skipping
-- or rebuilding a definition needs membership in its owner role.
--
-- Definitions made before 1.2 recorded no owner (projections did): they get
-- the owner of their function, which is the role whose code it is, and
-- PostgreSQL's default search_path.
--

ALTER TABLE @extschema@.es_aggregates
    ADD COLUMN owner regrole,
    ADD COLUMN search_path text COLLATE "C";

UPDATE @extschema@.es_aggregates a
   SET owner = COALESCE((SELECT p.proowner FROM pg_catalog.pg_proc p
                          WHERE p.oid OPERATOR(pg_catalog.=) a.evolve::pg_catalog.oid),
                        (SELECT e.extowner FROM pg_catalog.pg_extension e
                          WHERE e.extname OPERATOR(pg_catalog.=) 'event_sourcing'))::pg_catalog.regrole,
       search_path = '"$user", public, pg_temp';

ALTER TABLE @extschema@.es_aggregates
    ALTER COLUMN owner SET NOT NULL,
    ALTER COLUMN search_path SET NOT NULL;

COMMENT ON COLUMN @extschema@.es_aggregates.owner IS
    'The role that defined the aggregate: evolve and decide run as it; only its members may redefine it';
COMMENT ON COLUMN @extschema@.es_aggregates.search_path IS
    'search_path evolve and decide run with: the definer''s, pg_temp last';

ALTER TABLE @extschema@.es_upcasters
    ADD COLUMN owner regrole,
    ADD COLUMN search_path text COLLATE "C";

UPDATE @extschema@.es_upcasters u
   SET owner = COALESCE((SELECT p.proowner FROM pg_catalog.pg_proc p
                          WHERE p.oid OPERATOR(pg_catalog.=) u.upcast::pg_catalog.oid),
                        (SELECT e.extowner FROM pg_catalog.pg_extension e
                          WHERE e.extname OPERATOR(pg_catalog.=) 'event_sourcing'))::pg_catalog.regrole,
       search_path = '"$user", public, pg_temp';

ALTER TABLE @extschema@.es_upcasters
    ALTER COLUMN owner SET NOT NULL,
    ALTER COLUMN search_path SET NOT NULL;

COMMENT ON COLUMN @extschema@.es_upcasters.owner IS
    'The role that registered the step: upcast runs as it; only members of the owner of a type''s first step may extend its chain';
COMMENT ON COLUMN @extschema@.es_upcasters.search_path IS
    'search_path upcast runs with: the definer''s, pg_temp last';

ALTER TABLE @extschema@.es_projection_defs
    ADD COLUMN search_path text COLLATE "C";

UPDATE @extschema@.es_projection_defs SET search_path = '"$user", public, pg_temp';

ALTER TABLE @extschema@.es_projection_defs
    ALTER COLUMN search_path SET NOT NULL;

COMMENT ON COLUMN @extschema@.es_projection_defs.search_path IS
    'search_path handler and reset run with: the definer''s, pg_temp last';

-- Snapshots: folds store them as the aggregate's owner; es_snapshot_save
-- needs membership in the aggregate's owner, or (category without aggregate)
-- in the owner of the snapshot it replaces.  Snapshots saved before 1.2 have
-- none: the first es_snapshot_save over one takes it.  Folded snapshots from
-- before 1.2 are no longer used (the fingerprint now covers the owner and
-- search_path), so es_snapshot_prune removes them.
ALTER TABLE @extschema@.es_snapshots
    ADD COLUMN owner regrole;

COMMENT ON COLUMN @extschema@.es_snapshots.owner IS
    'Who stored the snapshot: the aggregate''s owner, or the role that saved it (NULL: before 1.2)';

-- es_projections shows the search_path too (new columns go last).
CREATE OR REPLACE VIEW @extschema@.es_projections AS
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
           p.updated_at,
           p.search_path
      FROM @extschema@.es_projection_defs p,
           (SELECT @extschema@._es_projection_head() AS head) h;
