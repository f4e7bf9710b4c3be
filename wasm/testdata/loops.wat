;; Functions shaped as Go's Wasm backend shapes every function (see
;; dispatch.wat), with the loops the preempt rewrite restructures. Each takes
;; the $pc to start at, as Go's runtime sets it to resume a function, so the
;; tests can enter every basic block, loops' middles included.
;;
;; nested: for i := 0; i < n; i++ { for j := 0; j < i; j++ { acc += i*j+1 } }
;; — back-edges 3→2 and 4→1, so two regions, one inside the other.
;;
;; crossing: back-edges 3→1 and 4→2, loops that overlap without nesting; the
;; rewrite makes a region of the first and leaves the second to the dispatcher.
;;
;; rotated: a loop entered at its test, the block br_table's default sends to,
;; with a $pc past the table (99), as a rotated loop is; the test is inside the
;; region.
;;
;; scratch: block 0 sets $pc and falls into the loop without a jump, as Go
;; uses $pc's local for an indirect call's target; the region's dispatcher must
;; still begin the loop at its first block.
(module
  (memory 1)
  (func (export "nested") (param $n i32) (param $start i32) (result i32)
    (local $pc i32) (local $acc i32) (local $i i32) (local $j i32)
    (local.set $pc (local.get $start))
    (loop $d
      (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
        (br_table $b0 $b1 $b2 $b3 $b4 $b5 (local.get $pc)))
        ;; 0: start
        (local.set $acc (i32.const 0))
        (local.set $i (i32.const 0))
        i32.const 1
        local.set $pc
        br $d)
        ;; 1: outer test
        (if (i32.ge_s (local.get $i) (local.get $n))
          (then
            i32.const 5
            local.set $pc
            br $d))
        (local.set $j (i32.const 0)))
        ;; 2: inner test
        (if (i32.ge_s (local.get $j) (local.get $i))
          (then
            i32.const 4
            local.set $pc
            br $d)))
        ;; 3: inner body
        (local.set $acc (i32.add (local.get $acc) (i32.add (i32.mul (local.get $i) (local.get $j)) (i32.const 1))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        i32.const 2
        local.set $pc
        br $d)
        ;; 4: outer step
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        i32.const 1
        local.set $pc
        br $d)
      ;; 5: the answer
      (return (i32.add (local.get $acc) (i32.mul (local.get $i) (i32.const 1000)))))
    unreachable)

  (func (export "crossing") (param $n i32) (param $start i32) (result i32)
    (local $pc i32) (local $acc i32) (local $i i32)
    (local.set $pc (local.get $start))
    (loop $d
      (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
        (br_table $b0 $b1 $b2 $b3 $b4 $b5 (local.get $pc)))
        ;; 0: start
        (local.set $acc (i32.const 0))
        (local.set $i (i32.const 0)))
        ;; 1
        (local.set $acc (i32.add (local.get $acc) (i32.const 1))))
        ;; 2
        (local.set $acc (i32.rem_u (i32.mul (local.get $acc) (i32.const 3)) (i32.const 1000003)))
        (local.set $i (i32.add (local.get $i) (i32.const 1))))
        ;; 3: back to 1 on every third i
        (if (i32.and (i32.eqz (i32.rem_u (local.get $i) (i32.const 3))) (i32.lt_s (local.get $i) (local.get $n)))
          (then
            i32.const 1
            local.set $pc
            br $d)))
        ;; 4: back to 2 while i < n
        (if (i32.lt_s (local.get $i) (local.get $n))
          (then
            i32.const 2
            local.set $pc
            br $d)))
      ;; 5: the answer
      (return (i32.add (local.get $acc) (i32.mul (local.get $i) (i32.const 1000000)))))
    unreachable)

  (func (export "rotated") (param $n i32) (param $start i32) (result i32)
    (local $pc i32) (local $acc i32) (local $i i32)
    (local.set $pc (local.get $start))
    (loop $d
      (block $b2 (block $b1 (block $b0
        (br_table $b0 $b1 $b2 (local.get $pc)))
        ;; 0
        (local.set $acc (i32.const 0))
        (local.set $i (i32.const 0))
        i32.const 99
        local.set $pc
        br $d)
        ;; 1: the body
        (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 3)) (i32.add (local.get $i) (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1))))
      ;; 2: the test, br_table's default
      (if (i32.lt_s (local.get $i) (local.get $n))
        (then
          i32.const 1
          local.set $pc
          br $d))
      (return (i32.add (local.get $acc) (i32.mul (local.get $i) (i32.const 1000)))))
    unreachable)

  (func (export "scratch") (param $n i32) (param $start i32) (result i32)
    (local $pc i32) (local $acc i32) (local $i i32)
    (local.set $pc (local.get $start))
    (loop $d
      (block $b2 (block $b1 (block $b0
        (br_table $b0 $b1 $b2 $b2 (local.get $pc)))
        ;; 0: $pc as scratch, then into the loop
        (local.set $acc (i32.const 0))
        (local.set $i (i32.const 0))
        i32.const 2
        local.set $pc)
        ;; 1
        (local.set $acc (i32.add (local.get $acc) (i32.const 10))))
      ;; 2
      (local.set $acc (i32.add (local.get $acc) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (if (i32.lt_s (local.get $i) (local.get $n))
        (then
          i32.const 1
          local.set $pc
          br $d))
      (return (i32.add (local.get $acc) (i32.mul (local.get $i) (i32.const 1000)))))
    unreachable))
