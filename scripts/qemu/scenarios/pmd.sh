# fg.test=pmd: our PMD drives the model's VF through the guest kernel's
# vfio-pci and the emulated intel-iommu.
# Needs /bin/fg-pmd-test (pmd/examples/guest_pmd.rs, built static by
# guest-test.sh and added with mkinitramfs.sh --bin PROG:/bin/fg-pmd-test).
# It is called as
#   /bin/fg-pmd-test <BDF> <IOMMU group> [fg.arg = frames to forward]
# prints its own FG-RESULT lines (and FG-FAULT-IOVA for the host's check of
# the model server's fault record) and exits 0 when all passed.
# Every 82599 (8086:10ED) and X540 (8086:1515) VF attached, in that order; the
# host serves one of each. Each gets its own fg-pmd-test run.
if [ ! -x /bin/fg-pmd-test ]; then
    result pmd-run FAIL "/bin/fg-pmd-test missing from the initramfs"
    return 0
fi
found=
for id in 10ed 1515; do
    bdf=$(find_pci 8086 $id) || continue
    found=1
    if ! grp=$(bind_vfio "$bdf"); then
        result pmd-bind-$id FAIL "$bdf could not be bound to vfio-pci"
        continue
    fi
    result pmd-bind-$id PASS "$bdf (8086:$id) bound to vfio-pci, /dev/vfio/$grp"
    echo "FG-INFO fg-pmd-test on 8086:$id"
    if /bin/fg-pmd-test "$bdf" "$grp" $FG_ARG; then
        result pmd-run-$id PASS "fg-pmd-test on $bdf exited 0"
    else
        result pmd-run-$id FAIL "fg-pmd-test on $bdf exited $?"
    fi
done
[ -n "$found" ] || result pmd-probe FAIL "no 82599/X540 VF on the PCI bus"
dmesg | grep -iE 'DMAR|fault' | tail -n 10
