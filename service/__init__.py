"""The AI Hub HTTP API (`ems serve`): FastAPI over the SDK and the registry."""
