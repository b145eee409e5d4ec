"""Each logger backend end to end with a short run: its scalars, the evaluation video, resume."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest
import yaml

from recipe_helpers import run_command, run_recipe

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

VIDEO = ("eval.video=true", "eval.video_size=[64,48]")


def test_tensorboard_gets_scalars_videos_and_a_plot(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_recipe(tmp_path, "logger.backend=tensorboard", *VIDEO)
    events = EventAccumulator(str(tmp_path / "logs"), size_guidance={"images": 0})
    events.Reload()
    assert [event.step for event in events.Scalars("eval/return_mean")] == [512, 1024]
    assert [event.step for event in events.Scalars("loss_actor")] == [256, 512, 768, 1024]
    videos = events.Images("eval/video")  # TensorBoard keeps a video as an animated GIF
    assert [(video.step, video.width, video.height) for video in videos] == [(512, 64, 48), (1024, 64, 48)]
    assert videos[0].encoded_image_string[:6] == b"GIF89a"
    assert not (tmp_path / "logs" / "scalars").exists()
    # The config in TensorBoard's HPARAMS tab, in the run's own folder.
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["loss.beta"].number_value == 1.0 and hparams["env.name"].string_value == "Hopper-v5"
    assert hparams["model.hidden_sizes"].string_value == "[128, 64]"
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "learning_curve.png").unlink()  # torchrl-awr plot draws it again, from the event files
    assert plot_command(tmp_path).stdout.strip() == str(tmp_path / "learning_curve.png")
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in (tmp_path / "videos").iterdir()) == ["1024.mp4", "512.mp4"]


def plot_command(run_dir, code: int = 0):
    result = subprocess.run(
        [sys.executable, "-m", "torchrl_awr", "plot", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == code, result.stderr[-2000:]
    return result


def wandb_records(run_dir) -> list:
    """The protobuf records of an offline W&B run's transaction log (``run-<id>.wandb``): a header,
    then 32 KiB blocks of chunks (checksum, length, kind: 1 whole, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("*.wandb")
    data = path.read_bytes()
    block, position, chunks, records = 32768, 7, [], []
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (length == 0 and kind == 0):  # the block's zero padding
            position += left
            continue
        chunks.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


def wandb_history(run_dir) -> list[dict[str, str]]:
    return [
        {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
        for record in wandb_records(run_dir)
        if record.WhichOneof("record_type") == "history"
    ]


def test_wandb_offline_gets_scalars_videos_and_a_resume_continues_its_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    run_recipe(run_dir, "logger.backend=wandb", *VIDEO, "collector.total_frames=512")
    run_id = yaml.safe_load((run_dir / "config.yaml").read_text())["logger"]["run_id"]
    # W&B keeps the history and plots it: torchrl-awr plot says so in one line.
    refused = plot_command(run_dir, code=2).stderr
    assert (
        refused.startswith(f"error: the run logged to W&B (run {run_id} of project ") and len(refused.splitlines()) == 1
    )
    assert run_id and len(run_id) == 16
    (first,) = (run_dir / "wandb").glob(f"offline-run-*-{run_id}")
    history = wandb_history(first)
    evaluations = [row for row in history if "eval/return_mean" in row]
    assert [row["eval/step"] for row in evaluations] == ["512"]
    assert [row["step"] for row in history if "loss_actor" in row] == ["256", "512"]
    (video,) = [row for row in history if "eval/video/path" in row]
    assert (video["eval/video/width"], video["eval/video/height"]) == ("64", "48")
    assert (first / "files" / video["eval/video/path"].strip('"')).stat().st_size > 0
    # The command's resume logs into the same W&B run (its id is in config.yaml).
    result = run_command(tmp_path, f"resume={run_dir / 'checkpoint.pt'}", "collector.total_frames=1024", small=False)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(path.name.endswith(run_id) for path in runs)
    resumed = [
        row["eval/step"] for row in wandb_history(next(p for p in runs if p != first)) if "eval/return_mean" in row
    ]
    assert resumed == ["1024"]


def test_mlflow_gets_each_runs_scalars_and_ends_its_run(tmp_path):
    import mlflow

    for name in ("a", "b"):  # MLflow holds one active run per process: the first must have ended
        run_recipe(tmp_path / name, "logger.backend=mlflow", "logger.project=awr-test")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path.resolve() / 'b' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("awr-test").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "b"  # the run directory's name, not one MLflow draws
    assert run.data.params["loss.beta"] == "1.0" and run.data.params["task_name"] == "hopper"
    history = client.get_metric_history(run.info.run_id, "eval/return_mean")
    assert [metric.step for metric in history] == [512, 1024]
    assert [metric.step for metric in client.get_metric_history(run.info.run_id, "loss_actor")] == [256, 512, 768, 1024]
    (tmp_path / "b" / "learning_curve.png").unlink()  # torchrl-awr plot draws it again, from MLflow's database
    assert plot_command(tmp_path / "b").stdout.strip() == str(tmp_path / "b" / "learning_curve.png")
