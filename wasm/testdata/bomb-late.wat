;; Passes the dry run but grows memory past any limit on inputs over 300 bytes.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "\00\01\01a")
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 2048))
  (func (export "sluice_route") (param i32 i32) (result i64)
    (if (i32.gt_u (local.get 1) (i32.const 300)) (then (if (i32.eq (memory.grow (i32.const 60000)) (i32.const -1)) (then (unreachable)))))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 4))))
