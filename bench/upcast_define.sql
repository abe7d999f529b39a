-- bench/upcast_define.sql: the 2-step chains of 'MoneyDeposited' (SQL) and
-- 'CashDeposited' (the same steps in PL/pgSQL), schema 1 -> 2 -> 3, no
-- rename, registered in upcast_bench.sh's "with upcasters" store.
SELECT es_define_upcaster('MoneyDeposited', 1, 'bench_deposited_v1_to_v2(jsonb)');
SELECT es_define_upcaster('MoneyDeposited', 2, 'bench_deposited_v2_to_v3(jsonb)');
SELECT es_define_upcaster('CashDeposited', 1, 'bench_cash_v1_to_v2(jsonb)');
SELECT es_define_upcaster('CashDeposited', 2, 'bench_cash_v2_to_v3(jsonb)');
