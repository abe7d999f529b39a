/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Shims for the PostgreSQL versions the extension builds against (14-17).
 *
 * Version differences stay here, small, so the other files read as code
 * for the current release.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_COMPAT_H
#define ES_COMPAT_H

#include "postgres.h"

#include "access/tableam.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/tuplestore.h"

/* EXECUTE privilege on a function (object_aclcheck since PostgreSQL 16) */
#if PG_VERSION_NUM >= 160000
#define es_proc_aclcheck(fn, role, mode) \
	object_aclcheck(ProcedureRelationId, (fn), (role), (mode))
#else
#define es_proc_aclcheck(fn, role, mode) pg_proc_aclcheck((fn), (role), (mode))
#endif

#if PG_VERSION_NUM < 150000
/*
 * InitMaterializedSRF (PostgreSQL 15): set up a materialize-mode set-returning
 * function's tuplestore and descriptor in the per-query context.
 */
static inline void
InitMaterializedSRF(FunctionCallInfo fcinfo, bits32 flags)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcontext;
	TupleDesc	tupdesc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));

	oldcontext = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = CreateTupleDescCopy(tupdesc);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(oldcontext);
}
#endif

/* MarkGUCPrefixReserved (PostgreSQL 15) was EmitWarningsOnPlaceholders */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* ExecInsertIndexTuples gained onlySummarizing in PG 16 */
#if PG_VERSION_NUM >= 160000
#define es_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#else
#define es_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#endif

/*
 * simple_table_tuple_update reports which indexes need the new row version
 * as an enum since PG 16 (TU_Summarizing: only the summarizing ones); here,
 * as two flags, and the index insertion that honours them.
 */
static inline void
es_simple_tuple_update(Relation rel, ItemPointer otid, TupleTableSlot *slot,
					   Snapshot snapshot, bool *update_indexes,
					   bool *only_summarizing)
{
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes u;

	simple_table_tuple_update(rel, otid, slot, snapshot, &u);
	*update_indexes = (u != TU_None);
	*only_summarizing = (u == TU_Summarizing);
#else
	simple_table_tuple_update(rel, otid, slot, snapshot, update_indexes);
	*only_summarizing = false;
#endif
}

#if PG_VERSION_NUM >= 160000
#define es_insert_index_tuples_upd(rri, slot, estate, only_summarizing) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, (only_summarizing))
#else
#define es_insert_index_tuples_upd(rri, slot, estate, only_summarizing) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#endif

/* LockHeldByMe gained orstronger in PG 17 */
#if PG_VERSION_NUM >= 170000
#define es_lock_held_by_me(tag, mode) LockHeldByMe((tag), (mode), false)
#else
#define es_lock_held_by_me(tag, mode) LockHeldByMe((tag), (mode))
#endif

/* this backend's PGPROC number and local transaction id (renamed in 17) */
#if PG_VERSION_NUM >= 170000
#define es_my_procno() (MyProcNumber)
#define es_my_lxid() (MyProc->vxid.lxid)
#else
#define es_my_procno() (MyProc->pgprocno)
#define es_my_lxid() (MyProc->lxid)
#endif

#endif							/* ES_COMPAT_H */
