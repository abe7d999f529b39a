-- bench/upcast_define.sql: the 2-step chain of 'MoneyDeposited' (schema 1 ->
-- 2 -> 3, no rename), registered in upcast_bench.sh's "with upcasters" store.
SELECT es_define_upcaster('MoneyDeposited', 1, 'bench_deposited_v1_to_v2(jsonb)');
SELECT es_define_upcaster('MoneyDeposited', 2, 'bench_deposited_v2_to_v3(jsonb)');
