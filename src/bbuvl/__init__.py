"""bbu-vl: teach Qwen2.5-VL to find and judge the equipment in telecom-site inspection photos."""

__version__ = "0.1.0"
