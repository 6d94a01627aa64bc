#!/usr/bin/env bash
# The hard synthetic benchmark's protocol (README, "Hard synthetic benchmark"): for each seed, a
# fresh draw of 400 labelled videos (200 train / 100 eval / 100 test) and 800 unlabelled ones
# (seed + 1000, made for the variant that uses them), then one `vivit-tfx run` per variant,
# each scored at video level on eval and test by `vivit-tfx bench views` (K views averaged, as
# TFMA and serving score). Default draws 104-106 (101-103 chose the model). Prints one
# JSON line per (seed, variant, split). Reruns reuse the videos and clips already written.
#   scripts/hard_benchmark.sh OUT [SEEDS] [VARIANTS]
#   variants: hybrid (the default command), hybrid+unlabeled (--unlabeled-videos: pseudo-labels,
#             3,200 steps), vivit-tiny (--preset vivit-tiny, the linear tokenizer),
#             hybrid-long (labels alone for as many steps as hybrid+unlabeled runs: 3,200),
#             hybrid+unlabeled+noise (pseudo-labels with the student's photometric noise 0.3),
#             hybrid+fixmatch (--unlabeled-videos with method fixmatch: hybrid's steps),
#             hybrid+pretrain (--pretrain --unlabeled-videos --unlabeled-use pretraining:
#             masked pre-training through the conv stem on the train split and the footage for
#             as many steps as the fine-tuning (--pretrain-steps 0, or PRETRAIN_STEPS), then
#             hybrid's fine-tuning),
#             hybrid+pretrain+unlabeled (--pretrain --unlabeled-videos: the masked pre-training
#             on the train split alone, then pseudo-labels on the footage: teacher + student),
#             hybrid+pretrain-long (its control without the footage: the same pre-training,
#             then LONG_STEPS fine-tuning steps on the labels; give PRETRAIN_STEPS to both),
#             hybrid+pretrain-motion (hybrid+pretrain with the motion objective: the later
#             half hidden, motion maps the target),
#             hybrid+pretrain-train-split (the same pre-training on the train split alone: no
#             footage),
#             hybrid-rerun, hybrid+pretrain-rerun (the same command again, in its own folder:
#             run-to-run noise)
# PRETRAIN_OVERRIDES (a JSON object) goes to every --pretrain variant's --pretrain-overrides;
# SELF_TRAINING_OVERRIDES (a JSON object) goes to the --self-training-overrides of every variant
# that self-trains on the footage with the default settings (hybrid+unlabeled,
# hybrid+pretrain+unlabeled);
# TAG is appended to each run's folder and printed (runs of one variant with other settings).
# Few labels (README, "... with few labels"): VIDEOS=250 SPLITS="0.2 0.4 0.4" LONG_STEPS=1200
# gives 50 labelled training videos beside eval and test splits of 100 each.
set -euo pipefail
out=$1
seeds=${2:-"104 105 106"}
variants=${3:-"hybrid hybrid+unlabeled vivit-tiny"}
tool="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/vivit-tfx"
read -r train_share eval_share test_share <<< "${SPLITS:-0.5 0.25 0.25}"
for seed in $seeds; do
  d=$out/seed$seed
  [ -d "$d/videos" ] || "$tool" make-synthetic --difficulty hard --num-clips "${VIDEOS:-400}" \
      --seed "$seed" \
      --output "$d/videos" > /dev/null
  [ -d "$d/clips" ] || "$tool" ingest --input "$d/videos" --output "$d/clips" \
      --train "$train_share" --eval "$eval_share" --test "$test_share" > /dev/null
  for variant in $variants; do
    case $variant in
      hybrid|hybrid-rerun) extra=() ;;
      hybrid+unlabeled|hybrid+unlabeled+noise|hybrid+fixmatch|hybrid+pretrain|hybrid+pretrain-rerun|\
      hybrid+pretrain-motion|hybrid+pretrain+unlabeled)
        [ -d "$d/unlabeled" ] || "$tool" make-synthetic --difficulty hard --num-clips 800 \
            --seed $((seed + 1000)) --output "$d/unlabeled" > /dev/null
        extra=(--unlabeled-videos "$d/unlabeled"
               --unlabeled-clips-dir "$d/unlabeled_clips")
        case $variant in
          hybrid+unlabeled+noise) extra+=(--self-training-overrides '{"student_noise": 0.3}') ;;
          hybrid+fixmatch) extra+=(--self-training-overrides '{"method": "fixmatch"}') ;;
          hybrid+pretrain|hybrid+pretrain-rerun)
            extra+=(--pretrain --pretrain-steps "${PRETRAIN_STEPS:-0}" --unlabeled-use pretraining) ;;
          hybrid+pretrain-motion) extra+=(--pretrain --pretrain-steps "${PRETRAIN_STEPS:-0}"
              --unlabeled-use pretraining
              --pretrain-overrides '{"mask": "future", "target": "motion"}') ;;
          hybrid+pretrain+unlabeled) extra+=(--pretrain --pretrain-steps "${PRETRAIN_STEPS:-0}") ;;
        esac ;;
      hybrid+pretrain-train-split) extra=(--pretrain --pretrain-steps "${PRETRAIN_STEPS:-0}") ;;
      hybrid+pretrain-long)  # --train-steps would set its pre-training's steps too
        extra=(--pretrain --pretrain-steps "${PRETRAIN_STEPS:?hybrid+pretrain-long needs PRETRAIN_STEPS}"
               --train-steps "${LONG_STEPS:-3200}") ;;
      vivit-tiny) extra=(--preset vivit-tiny) ;;
      hybrid-long) extra=(--train-steps "${LONG_STEPS:-3200}") ;;  # labels alone, the self-training run's steps
      *) echo "unknown variant $variant" >&2; exit 2 ;;
    esac
    if [ -n "${PRETRAIN_OVERRIDES:-}" ] && [[ " ${extra[*]} " == *" --pretrain "* ]]; then
      if [[ " ${extra[*]} " == *" --pretrain-overrides "* ]]; then
        echo "$variant sets its own --pretrain-overrides: run it without PRETRAIN_OVERRIDES" >&2
        exit 2
      fi
      extra+=(--pretrain-overrides "$PRETRAIN_OVERRIDES")
    fi
    if [ -n "${SELF_TRAINING_OVERRIDES:-}" ] && [[ " ${extra[*]} " == *" --unlabeled-videos "* ]]; then
      if [[ " ${extra[*]} " == *" --self-training-overrides "* || " ${extra[*]} " == *" --unlabeled-use "* ]]; then
        echo "$variant sets its own use of the footage: run it without SELF_TRAINING_OVERRIDES" >&2
        exit 2
      fi
      extra+=(--self-training-overrides "$SELF_TRAINING_OVERRIDES")
    fi
    root=$d/$variant${TAG:-}
    start=$(date +%s)
    "$tool" run --videos-dir "$d/videos" --clips-dir "$d/clips" --output-root "$root" \
        --accuracy-threshold 0 "${extra[@]}" > "$root.log" 2>&1
    seconds=$(( $(date +%s) - start ))
    model=$(ls -d "$root"/serving/vivit_violence/*/ | tail -1)
    for split in eval test; do
      row=$("$tool" bench views --model-dir "$model" --clips-dir "$d/clips" --split $split |
            tail -1)
      echo "{\"seed\": $seed, \"variant\": \"$variant${TAG:-}\", \"split\": \"$split\", \"run_s\": $seconds, \"views\": $row}"
    done
  done
done
