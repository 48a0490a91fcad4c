"""The SDS CSI plugin: Kubernetes volumes as subvolumes of an SDS filesystem (DESIGN.md 8)."""

DRIVER_NAME = "csi.sds.io"
