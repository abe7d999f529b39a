-- bench/subscription_sparse_naive.sql: the same poll as a hand-rolled
-- consumer would write it (subscription_sparse.sh's baseline): its
-- checkpoint (the position of the last match it processed) in a table of its
-- own, the next (at most) 100 matches after it straight from es_events, every
-- row to the client, and, when some came, the new checkpoint, in one
-- transaction.  Nothing remembers that the events between the checkpoint and
-- the end of the log held no match, so every poll walks them again (the
-- primary key's index from the checkpoint on, filtering event_type).
-- (Reading es_events directly also lacks es_read_all's never-skip guarantee:
-- an event of a transaction still in flight below the end can be skipped.)
\set last 0
BEGIN;
SELECT position AS cp FROM sparse_naive_checkpoint \gset
SELECT e.global_position AS last, e.* FROM es_events e
 WHERE e.global_position > :cp AND e.event_type = 'Rare'
 ORDER BY e.global_position LIMIT 100 \aset
\if :last > 0
UPDATE sparse_naive_checkpoint SET position = :last;
\endif
COMMIT;
