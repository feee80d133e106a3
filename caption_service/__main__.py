from studio.serve import main_for

if __name__ == "__main__":
    # One worker: the model lives in that process.
    main_for("caption_service:create_app()", "qwen_port", host_attr="qwen_host", workers=1, threads=16)
