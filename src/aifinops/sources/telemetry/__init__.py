"""GPU telemetry: nvidia-smi logs, dcgm-exporter, the NVML node agent, Prometheus."""
