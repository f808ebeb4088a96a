"""craft.models.nnsight: a clean and a corrupt batch as two invokes of one nnsight trace
reproduce craft's own patching figure (``verify.patching.patch``) for the crafted
induction head; invokes of different lengths pad; reading, setting and gradients work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("nnsight")
from craft.compiler import compile_spec  # noqa: E402
from craft.models import ComponentKind, component_records  # noqa: E402
from craft.models.nnsight import nnsight_model  # noqa: E402
from specs import library_path, load_spec  # noqa: E402
from specs.truth import next_dist  # noqa: E402
from verify.batched import kl, pad  # noqa: E402
from verify.patching import pairs, patch  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def crafted():
    spec = load_spec(library_path("induction"))
    return compile_spec(spec, "standard").model.double().eval(), spec


def _patched(lm, receiver: torch.Tensor, donor: torch.Tensor, layer: int, head: int):
    """Logits of ``receiver`` with ``head``'s output taken from ``donor``, one trace."""
    with lm.trace() as tracer:
        barrier = tracer.barrier(2)
        with tracer.invoke(donor):
            out = lm.blocks[layer].attn.hook_result.output[:, :, head]
            barrier()
        with tracer.invoke(receiver):
            barrier()
            lm.blocks[layer].attn.hook_result.output[:, :, head] = out
            logits = lm.output.save()
    return logits


def test_two_invokes_reproduce_crafts_patching_figure(crafted) -> None:
    """Both directions of verify.patching.patch's figure for the induction head, each
    from one trace whose two invokes are the clean and the corrupt batch."""
    model, spec = crafted
    rec = next(r for r in component_records(model) if r.kind == ComponentKind.INDUCTION)
    clean, bad = pairs(spec, rec.rules[0], 16, seed=0)
    ours = patch(model, spec, [(rec.layer, rec.head)], clean, bad)
    tok_c, last = (torch.from_numpy(a) for a in pad(spec, clean))
    tok_k = torch.from_numpy(pad(spec, bad)[0])
    p = np.stack([next_dist(spec, c)[0] for c in clean])
    lm = nnsight_model(model)

    def loss(logits: torch.Tensor) -> float:
        at = logits[torch.arange(len(last)), last].double().log_softmax(-1)
        return float(kl(p, at.detach().numpy()).mean())

    with torch.no_grad():
        base_c, base_k = loss(model(tok_c)), loss(model(tok_k))
        cc = loss(_patched(lm, tok_c, tok_k, rec.layer, rec.head)) - base_c
        kc = loss(_patched(lm, tok_k, tok_c, rec.layer, rec.head)) - base_k
    assert ours.n == 16 and ours.gap > 1
    assert abs(base_c - ours.clean) < 1e-9 and abs(base_k - ours.corrupt) < 1e-9
    assert abs(cc - ours.corrupt_to_clean) < 1e-9, (cc, ours)
    assert abs(kc - ours.clean_to_corrupt) < 1e-9, (kc, ours)
    assert ours.carried > 0.99 and ours.restored > 0.99  # the head carries the whole rule


def test_invokes_of_different_lengths_and_gradients(crafted) -> None:
    model, spec = crafted
    lm = nnsight_model(model)
    short = torch.tensor([spec.vocab.bos_id, 0, 1, 2])
    long = torch.tensor([[spec.vocab.bos_id, 3, 1, 0, 2, 1]])
    with lm.trace() as tracer:
        with tracer.invoke(short):
            a = lm.output.save()
        with tracer.invoke(long):
            pattern = lm.blocks[0].attn.hook_pattern.output.save()
            b = lm.output.save()
    with torch.no_grad():
        assert torch.allclose(a[0, :4], model(short[None])[0])
        assert torch.allclose(b, model(long))
    assert pattern.shape == (1, model.cfg.n_heads, 6, 6)
    with lm.trace(long):
        resid = lm.blocks[0].hook_resid_pre.output
        resid.requires_grad_(True)
        with lm.output[0, -1].max().backward():
            grad = resid.grad.save()
    assert grad.shape == (1, 6, model.cfg.d_model) and float(grad.abs().sum()) > 0
