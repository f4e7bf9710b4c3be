;; A minimal ABI v1 route policy: it always answers agents ["a"].
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "\00\01\01a")
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 2048))
  (func (export "sluice_route") (param i32 i32) (result i64) (local $i i32)
    (local.set $i (i32.const 1000000))
    (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 4))))
