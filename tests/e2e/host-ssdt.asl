/*
 * The host-device e2e guest's stand-in for Grace firmware (R3, R4, R6): the
 * _DSD device properties Grace firmware gives a GPU, on q35's slot devices.
 * QEMU's q35 DSDT names slot devices S<devfn hex>: slot 3 is \_SB.PCI0.S18
 * (the NVMe the tests pass through), slot 4 is S20 (an NVMe whose MSI-X table
 * has a BAR of its own, BAR4, which a fake BAR would replace: R27). The memory
 * is RAM the guest kernel leaves alone (memmap=1536M$0x20000000): 1.5 GiB,
 * which with the MIG bug (R2: no NVIDIA DVSEC) splits into 512 MiB of usemem
 * and 1 GiB of resmem (R7-R9).
 */
DefinitionBlock ("", "SSDT", 2, "NVGRCE", "HOSTE2E", 1)
{
    External (\_SB.PCI0.S18, DeviceObj)
    External (\_SB.PCI0.S20, DeviceObj)

    Scope (\_SB.PCI0.S18)
    {
        Name (_DSD, Package ()
        {
            ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
            Package ()
            {
                Package () { "nvidia,gpu-mem-base-pa", 0x20000000 },
                Package () { "nvidia,gpu-mem-size", 0x60000000 },
                Package () { "nvidia,gpu-mem-pxm-start", 16 },
                Package () { "nvidia,gpu-mem-pxm-count", 8 },
            }
        })
    }

    Scope (\_SB.PCI0.S20)
    {
        Name (_DSD, Package ()
        {
            ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
            Package ()
            {
                Package () { "nvidia,gpu-mem-base-pa", 0x20000000 },
                Package () { "nvidia,gpu-mem-size", 0x60000000 },
            }
        })
    }
}
