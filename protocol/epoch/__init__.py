"""An epoch: the signed descriptor and starting a new one."""
