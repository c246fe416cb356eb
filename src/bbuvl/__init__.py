"""bbu-vl: teach Qwen VL models (Qwen2.5-VL, Qwen3-VL, Qwen3.5) to find and judge the equipment in telecom-site inspection photos."""

__version__ = "0.1.0"
