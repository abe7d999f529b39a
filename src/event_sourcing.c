/*-------------------------------------------------------------------------
 *
 * event_sourcing.c
 *	  Module entry point of the event_sourcing extension.
 *
 * Holds the module magic and _PG_init, which registers what the other files
 * need from the backend (cache invalidation callbacks; later GUCs, shared
 * memory and the background worker).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

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
}
