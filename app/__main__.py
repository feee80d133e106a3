from studio.serve import main_for

if __name__ == "__main__":
    main_for("app:create_app()", "port", workers=1, threads=16)
