"""``push``: share a saved folder on the Hub (or a local folder laid out like it) with its model card."""

from __future__ import annotations

import logging
logger = logging.getLogger(__name__)



def add_push(sub) -> None:
    p = sub.add_parser("push", help="share a saved prompt folder on the Hugging Face Hub (or a local hub folder), with its model card")
    p.add_argument("--prompt", required=True, metavar="DIR", help="a run directory (prompt.safetensors, prompt.json)")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the Hub repository (created if needed)")
    p.add_argument("--hub", metavar="DIR", help="a local folder standing in for the Hub (default: $XLSPT_HUB_DIR, else the Hub)")
    p.add_argument("--private", action="store_true", help="create the Hub repository private")
    p.add_argument("--token", help="Hub token (default: your `hf auth login`)")
    p.add_argument("--dry-run", action="store_true", help="list the files and the model card's metadata that "
                   "would be uploaded, and upload nothing")


def cmd_push(args) -> int:
    from ..pipeline import push

    print(push(args.prompt, args.repo, hub=args.hub, token=args.token, private=args.private, dry_run=args.dry_run))
    if args.dry_run:
        logger.info(f"dry run: nothing was uploaded; push again without --dry-run to share {args.prompt} as {args.repo}")
        return 0
    logger.info(f"pushed {args.prompt} to {args.repo}: load it with `xlspt predict --prompt {args.repo}` "
                f"or xlspt.PromptClassifier.from_pretrained({args.repo!r})")
    return 0
