-- The MLflow backend store lives beside the feature data, in its own database.
CREATE DATABASE mlflow;
