/*-------------------------------------------------------------------------
 *
 * event_sourcing.c
 *	  Module entry point of the event_sourcing extension.
 *
 * Holds the module magic and _PG_init, which registers what the other files
 * need from the backend: cache invalidation callbacks, the settings under
 * the reserved prefix "event_sourcing.", the commit callback and, when the
 * library is preloaded, the shared memory es_wait sleeps on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "compat.h"
#include "event_sourcing.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init
 *		Called once when the library is loaded into a backend.
 */
void
_PG_init(void)
{
	es_catalog_init();

	DefineCustomIntVariable("event_sourcing.snapshots_to_keep",
							"Newest snapshots kept per stream when a snapshot is stored (0 keeps all).",
							"Older snapshots of the stream are deleted as each new one is stored. "
							"Folds to older versions start from the newest snapshot at or below "
							"them, so keeping only a few makes those folds longer.",
							&es_snapshots_to_keep,
							3, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	es_audit_init();
	es_inline_init();
	es_wait_init();
	/* after es_wait_init: commit callbacks run newest first, so a finished
	 * appender's slot is cleared before es_wait's waiters are woken */
	es_position_init();
	es_head_cache_init();
	es_log_mark_init();
	es_worker_init();

	MarkGUCPrefixReserved("event_sourcing");
}
