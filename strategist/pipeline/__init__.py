"""End-to-end pipelines: reproduce VirtualStrategist-Base from a seed."""
