from studio.serve import main_for

if __name__ == "__main__":
    main_for("trainer:create_app()", "trainer_port", workers=1, threads=32)
