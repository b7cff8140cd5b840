"""The FastAPI app: thin routes over service/ and trainlib/."""
