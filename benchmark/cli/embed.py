"""`python -m benchmark embed`: one task split through one encoder."""
from __future__ import annotations

from benchmark.cli.options import data_options, embedding_options, task_id, writable_cache


def add_parser(sub) -> None:
    embed = sub.add_parser("embed", help="embed one task split with one encoder (cached) and summarise it",
                           description="Compute (or load from the cache) the embeddings of one task split.")
    embed.add_argument("--encoder", required=True, help="registered encoder name or open_clip:ARCH/TAG")
    embed.add_argument("--task", required=True, help="a registered task, a task file (.json) or an image folder")
    embed.add_argument("--split", choices=["train", "test"], default="train")
    embed.add_argument("--n", type=int, metavar="N", help="class-balanced sample size (default: the whole split)")
    embedding_options(embed)
    data_options(embed)


def command(args) -> int:
    import time

    from benchmark.store.validate import at_least, check_device
    from encoders import get_encoder
    from encoders.extract import embed
    from estimators.zero_shot_acc import zero_shot_accuracy
    from tasks import get_task

    task = get_task(task_id(args.task))
    at_least("--n", args.n, 1)
    at_least("--batch-size", args.batch_size, 1)
    at_least("--seed", args.seed, 0)
    check_device(args.device)
    writable_cache(args.cache_dir)
    encoder = get_encoder(args.encoder)
    start = time.perf_counter()
    emb = embed(encoder, task, args.split, n=args.n, seed=args.seed, prompts=args.prompts, data_root=args.data_root,
                cache_dir=args.cache_dir, device=args.device, batch_size=args.batch_size, download=args.download)
    accuracy = "n/a (image-only)" if emb.text is None else f"{zero_shot_accuracy(emb.image, emb.labels, emb.text):.3f}"
    print(f"{encoder.id} on {task.id}/{args.split}: n={emb.n} dim={emb.dim} classes={emb.n_classes} "
          f"zero-shot acc={accuracy} (chance {1 / task.n_classes:.3f}) "
          f"in {time.perf_counter() - start:.1f}s; source: {emb.meta.get('source')}")
    return 0
