# fg.test=smoke: the guest stack works: modules, VFIO, emulated IOMMU, real
# tools, and (if QEMU's edu device is attached) a vfio-pci bind.
# Sourced by /init; result/check/bind_vfio/find_pci come from there.

for m in vfio vfio_iommu_type1 vfio_pci_core vfio_pci irqbypass ixgbevf; do
    check "smoke-mod-$m" "module $m loaded" -- grep -q "^$m " /proc/modules
done
check smoke-dev-vfio "/dev/vfio/vfio is a char device" -- test -c /dev/vfio/vfio
check smoke-dmar "intel-iommu registered (/sys/class/iommu/dmar0)" -- test -e /sys/class/iommu/dmar0
check smoke-ir "interrupt remapping enabled" -- sh -c 'dmesg | grep -q "Enabled IRQ remapping"'
check smoke-groups "PCI functions have IOMMU groups" -- sh -c 'ls /sys/kernel/iommu_groups | grep -q .'
check smoke-lspci "real lspci runs" -- sh -c "$LSPCI -nn | grep -q '8086:29c0'"
check smoke-ip "real ip runs" -- sh -c "$IP -d link show lo | grep -q 'LOOPBACK'"
check smoke-ethtool "real ethtool runs" -- $ETHTOOL --version

# QEMU's edu device (1234:11e8), attached with run-guest.sh --edu, stands in
# for the future vfio-user device: same bind path the PMD test will use.
if bdf=$(find_pci 1234 11e8); then
    if grp=$(bind_vfio "$bdf"); then
        result smoke-bind PASS "$bdf bound to vfio-pci, /dev/vfio/$grp"
    else
        result smoke-bind FAIL "$bdf could not be bound to vfio-pci"
    fi
fi
