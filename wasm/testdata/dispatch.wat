;; A function shaped as Go's Wasm backend shapes every function: one loop
;; around a dispatcher (empty blocks, local.get $pc, br_table), the code of each
;; basic block after the end of one of its blocks, and jumps that set $pc and
;; branch back to the loop. sumsq(n) = 0² + 1² + … + (n-1)², with forward jumps
;; (0→1, 1→2, 1→3 through br_table's default) and a backward one (2→1). The
;; preempt rewrite makes the forward jumps direct.
(module
  (memory 1)
  (func (export "sumsq") (param $n i32) (result i32) (local $pc i32) (local $acc i32) (local $i i32)
    (local.set $pc (i32.const 0))
    (loop $d
      (block $b3 (block $b2 (block $b1 (block $b0
        (br_table $b0 $b1 $b2 $b3 (local.get $pc)))
        ;; 0: start
        (local.set $acc (i32.const 0))
        (local.set $i (i32.const 0))
        i32.const 1
        local.set $pc
        br $d)
        ;; 1: loop test; done goes to 9, past the table: its default is 3
        (if (i32.ge_s (local.get $i) (local.get $n))
          (then
            i32.const 9
            local.set $pc
            br $d))
        i32.const 2
        local.set $pc
        br $d)
        ;; 2: body, then back to the test
        (local.set $acc (i32.add (local.get $acc) (i32.mul (local.get $i) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        i32.const 1
        local.set $pc
        br $d)
      ;; 3: the answer
      (return (local.get $acc)))
    unreachable))
