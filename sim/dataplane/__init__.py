"""The simulator's data plane: real qcow2 images, qemu-nbd exports and ovirt-imageio daemons."""
