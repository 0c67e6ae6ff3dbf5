"""Run I/O and checkpoints: what a run leaves on disk and how it is read back.

- `atomic`: atomic writes (temporary file, then rename) for every file the project writes;
- `run_folder`: a run's folder: config.yaml, metrics.jsonl, results.json;
- `tables`: the plain-text score tables that the commands print;
- `logs`: what a command shows: `logging` set up for --quiet / --verbose, tqdm bars on a terminal only;
- `tensorboard_log`: a run's records as TensorBoard events (`--tensorboard`);
- `checkpoint`: reading a checkpoint safely (weights only) and rebuilding its trained model;
- `solver_state`: what a Solver's checkpoint holds, and how a resumed Solver takes it back.

Import the modules themselves (`from runio.atomic import atomic_write_json`): this file imports
nothing, so that the data package can use the atomic writers without loading the model.
"""
