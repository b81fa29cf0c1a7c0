# fg.test=pmd: our PMD drives the model's VF through the guest kernel's
# vfio-pci and the emulated intel-iommu.
# Needs /bin/fg-pmd-test (pmd/examples/guest_pmd.rs, built static by
# guest-test.sh and added with mkinitramfs.sh --bin PROG:/bin/fg-pmd-test).
# It is called as
#   /bin/fg-pmd-test <BDF> <IOMMU group> [fg.arg = frames to forward]
# prints its own FG-RESULT lines (and FG-FAULT-IOVA for the host's check of
# the model server's fault record) and exits 0 when all passed.
bdf=$(find_pci 8086 10ed || find_pci 8086 1515 || find_pci 8086 1565) || bdf=
if [ -z "$bdf" ]; then
    result pmd-probe FAIL "no 82599/X540/X550 VF on the PCI bus"
    return 0
fi
if ! grp=$(bind_vfio "$bdf"); then
    result pmd-bind FAIL "$bdf could not be bound to vfio-pci"
    return 0
fi
result pmd-bind PASS "$bdf bound to vfio-pci, /dev/vfio/$grp"
if [ ! -x /bin/fg-pmd-test ]; then
    result pmd-run FAIL "/bin/fg-pmd-test missing from the initramfs"
    return 0
fi
if /bin/fg-pmd-test "$bdf" "$grp" $FG_ARG; then
    result pmd-run PASS "fg-pmd-test exited 0"
else
    result pmd-run FAIL "fg-pmd-test exited $?"
fi
dmesg | grep -iE 'DMAR|fault' | tail -n 10
