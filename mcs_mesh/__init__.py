"""A local clusterset of real kube-apiservers (``mcs mesh``): binaries, certificates, processes."""
