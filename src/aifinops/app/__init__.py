"""The parts of the service, one concern each; `Service` hands every call to one of them."""
