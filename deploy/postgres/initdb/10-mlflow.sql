-- Runs once, when the postgres volume is first initialised: MLflow's backend store lives
-- in its own database next to driftd's state (POSTGRES_DB=driftd).
CREATE DATABASE mlflow OWNER driftd;
