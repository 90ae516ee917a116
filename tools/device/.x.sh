source tools/device/common.sh; X=$(dsv4_unpack out/a); dsv4_run_start "$X" 250; cd "$X"
note "memcheck d5ee75f"
timeout "$(budget 200)" compute-sanitizer --tool memcheck --print-limit 20 ./cuda_tests --gtest_filter='CudaForward.ShortChunks*:CudaDraft.*:CudaGeneration.Drafts*:CudaMatvecSharedX.*' > $OUT/memcheck.txt 2>&1; note "rc=$?"
grep -E "ERROR SUMMARY|PASSED|FAILED|OK \]" $OUT/memcheck.txt | tee -a $SUMMARY
