"""The models-from-code template that serves a scikit-learn model through the same output
contract as the ONNX variants."""


# The sklearn model served through the same output contract as the ONNX variants (columns
# `prediction` and `proba_<class>`), so consumers of models:/NAME@champion need not care
# which variant serves. Models-from-code: loading it needs mlflow and sklearn, not driftd.
_SKLEARN_PYFUNC = '''"""driftd: serve a scikit-learn model from a DataFrame of raw columns."""
import mlflow
import pandas as pd


class SklearnFrameModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.model = mlflow.sklearn.load_model(context.artifacts["sklearn_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        # scikit-learn wants exactly its training columns, in their order, when it was fitted on them.
        names = getattr(self.model, "feature_names_in_", None)
        inputs = frame[list(names)] if names is not None and all(n in frame.columns for n in names) else frame
        result = pd.DataFrame({"prediction": self.model.predict(inputs)}, index=frame.index)
        if hasattr(self.model, "predict_proba") and hasattr(self.model, "classes_"):
            proba = self.model.predict_proba(inputs)
            for k, label in enumerate(self.model.classes_):
                result[f"proba_{label}"] = proba[:, k]
        return result


mlflow.models.set_model(SklearnFrameModel())
'''
