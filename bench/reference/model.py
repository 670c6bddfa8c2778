"""DeepSeek-V3 with multi-token prediction in plain PyTorch: the reference nextn is compared with.

Written the way a PyTorch user writes it: one nn.Module per block, parameter names equal to the
Hugging Face DeepSeek-V3 checkpoint names (so a state dict loads as it is), MoE experts as an
nn.ModuleList run in a Python loop over the experts that received tokens, and attention with
per-head keys and values (also in the decode cache). Nothing here imports nextn: the parity test
compares nextn's losses and gradients with this module's, so the two must be independent.

Equations are those of the DeepSeek-V3 technical report (arXiv 2412.19437): MLA (1-11), DeepSeekMoE
with sigmoid, bias-steered, group-limited routing (12-16), sequence-wise balance loss (17-20),
MTP modules (21-23) and the MTP objective (24-25). Conventions where the report leaves a choice
(all of them nextn's too, see ../../../shared/reference/FACTS.md in the project's shared folder):
  - MTP: eh_proj([enorm(Emb(t_{i+k})); hnorm(h^{k-1}_i)]), embedding first, as in the released
    weights; h^0 is the main model's last hidden state before the final norm.
  - RoPE rotates interleaved pairs (2j, 2j+1); YaRN frequencies and softmax mscale^2.
  - L_MTP^k divides its sum by the main loss's token count (T per sequence), not by T-k.
  - A second MTP kind, "parallel" (Gloeckle et al. 2024): head k runs its own block on h^0.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    """The keys of config.json the model needs; a key the file lacks (or sets to null) takes the
    default of Hugging Face's DeepseekV3Config, as in nextn (src/nextn/config/model_config.cpp)."""

    def __init__(self, d):
        def hf(key, default):
            value = d.get(key)
            return default if value is None else value

        self.raw = dict(d)
        self.vocab_size = d["vocab_size"]
        self.hidden_size = d["hidden_size"]
        self.intermediate_size = hf("intermediate_size", 18432)
        self.moe_intermediate_size = hf("moe_intermediate_size", 2048)
        self.num_hidden_layers = d["num_hidden_layers"]
        self.first_k_dense_replace = hf("first_k_dense_replace", 3)
        self.moe_layer_freq = hf("moe_layer_freq", 1)
        self.num_attention_heads = d["num_attention_heads"]
        self.q_lora_rank = d.get("q_lora_rank", 1536)  # null: a plain q_proj
        self.kv_lora_rank = d["kv_lora_rank"]
        self.qk_nope_head_dim = d["qk_nope_head_dim"]
        self.qk_rope_head_dim = d["qk_rope_head_dim"]
        self.v_head_dim = d["v_head_dim"]
        self.n_routed_experts = hf("n_routed_experts", 256)
        self.n_shared_experts = hf("n_shared_experts", 1)
        self.num_experts_per_tok = hf("num_experts_per_tok", 8)
        self.n_group = hf("n_group", 8)
        self.topk_group = hf("topk_group", 4)
        self.group_score_topk = d.get("group_score_topk") or 2  # as DeepSeek's and HF's code
        self.routed_scaling_factor = hf("routed_scaling_factor", 2.5)
        self.norm_topk_prob = hf("norm_topk_prob", True)
        self.rms_norm_eps = hf("rms_norm_eps", 1e-6)
        self.rope_theta = hf("rope_theta", 10000.0)
        self.rope_scaling = d.get("rope_scaling")
        self.max_position_embeddings = d["max_position_embeddings"]
        self.num_nextn_predict_layers = hf("num_nextn_predict_layers", 0)
        self.mtp_kind = hf("mtp_kind", "sequential")
        self.tie_word_embeddings = hf("tie_word_embeddings", False)
        self.initializer_range = hf("initializer_range", 0.02)
        if d.get("scoring_func", "sigmoid") != "sigmoid" or d.get("topk_method", "noaux_tc") != "noaux_tc":
            raise ValueError("the reference implements scoring_func 'sigmoid' with topk_method 'noaux_tc' only")
        if self.mtp_kind not in ("sequential", "parallel"):
            raise ValueError("mtp_kind must be 'sequential' or 'parallel', got %r" % self.mtp_kind)

    def is_moe_layer(self, i):
        return (self.n_routed_experts > 0 and i >= self.first_k_dense_replace
                and i % self.moe_layer_freq == 0)


def yarn_mscale(factor, mscale):
    return 1.0 if factor <= 1.0 else 0.1 * mscale * math.log(factor) + 1.0


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight


class Rotary(nn.Module):
    """cos/sin tables of RoPE with YaRN (Peng et al. 2023), one angle per interleaved pair."""

    def __init__(self, cfg):
        super().__init__()
        dim, base = cfg.qk_rope_head_dim, cfg.rope_theta
        inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        mscale = 1.0
        s = cfg.rope_scaling
        if s:
            factor = s["factor"]
            original = s["original_max_position_embeddings"]

            def dim_for(rotations):  # the dimension whose wavelength makes `rotations` turns
                return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

            low = max(math.floor(dim_for(s.get("beta_fast", 32))), 0)
            high = min(math.ceil(dim_for(s.get("beta_slow", 1))), dim - 1)
            if low == high:
                high += 0.001
            ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
            # ramp 0: high frequency, kept; ramp 1: low frequency, interpolated (divided by factor).
            inv_freq = inv_freq * (1 - ramp) + inv_freq / factor * ramp
            mscale = yarn_mscale(factor, s.get("mscale", 1.0)) / yarn_mscale(factor, s.get("mscale_all_dim", 0.0))
        angles = torch.outer(torch.arange(cfg.max_position_embeddings, dtype=torch.float64), inv_freq)
        self.register_buffer("cos", (angles.cos() * mscale).float(), persistent=False)
        self.register_buffer("sin", (angles.sin() * mscale).float(), persistent=False)

    def forward(self, start, length):
        if start + length > self.cos.shape[0]:
            raise ValueError("positions up to %d exceed max_position_embeddings %d" % (start + length, self.cos.shape[0]))
        return self.cos[start:start + length], self.sin[start:start + length]


def rotate_pairs(x, cos, sin):
    """x [B, H, T, D]: rotates (x[2j], x[2j+1]) by the angle of pair j at each position."""
    pairs = x.unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    """Multi-head latent attention, keys and values expanded per head (HF's formulation)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, heads = cfg.hidden_size, cfg.num_attention_heads
        self.q_head_dim = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        if cfg.q_lora_rank is None:
            self.q_proj = nn.Linear(h, heads * self.q_head_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(h, cfg.q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, cfg.rms_norm_eps)
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, heads * self.q_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(h, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, cfg.rms_norm_eps)
        self.kv_b_proj = nn.Linear(cfg.kv_lora_rank, heads * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.o_proj = nn.Linear(heads * cfg.v_head_dim, h, bias=False)
        self.scale = self.q_head_dim ** -0.5
        s = cfg.rope_scaling
        if s and s.get("mscale_all_dim", 0.0):
            self.scale *= yarn_mscale(s["factor"], s["mscale_all_dim"]) ** 2

    def forward(self, x, cos, sin, cache=None):
        """x [B, T, hidden]; cos/sin for its positions. cache: None, or a dict holding this layer's
        keys and values of earlier positions (extended in place)."""
        cfg = self.cfg
        B, T, _ = x.shape
        H, nope, rope = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
        q = self.q_proj(x) if cfg.q_lora_rank is None else self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.view(B, T, H, self.q_head_dim).transpose(1, 2)
        q_nope, q_pe = q.split([nope, rope], dim=-1)
        c_kv, k_pe = self.kv_a_proj_with_mqa(x).split([cfg.kv_lora_rank, rope], dim=-1)
        kv = self.kv_b_proj(self.kv_a_layernorm(c_kv)).view(B, T, H, nope + cfg.v_head_dim).transpose(1, 2)
        k_nope, v = kv.split([nope, cfg.v_head_dim], dim=-1)
        q_pe = rotate_pairs(q_pe, cos, sin)
        k_pe = rotate_pairs(k_pe.view(B, 1, T, rope), cos, sin)

        query = torch.cat([q_nope, q_pe], dim=-1)
        key = torch.cat([k_nope, k_pe.expand(B, H, T, rope)], dim=-1)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                key = torch.cat([cache["k"], key], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = key, v
        scores = torch.matmul(query, key.transpose(-1, -2)) * self.scale
        if T > 1:
            # Query j (absolute position past + j) sees keys 0..past + j.
            mask = torch.full((T, past + T), float("-inf"), dtype=scores.dtype).triu(past + 1)
            scores = scores + mask
        probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, H * cfg.v_head_dim)
        return self.o_proj(out)


class MLP(nn.Module):
    """SwiGLU feed-forward: dense layers, every routed expert and the shared experts."""

    def __init__(self, hidden, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    """noaux_tc routing: sigmoid affinities; the bias only steers which experts are selected."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts))

    def forward(self, x):
        """x [N, hidden] -> (expert ids [N, K], gate weights [N, K], affinities [N, E])."""
        cfg = self.cfg
        scores = torch.sigmoid(F.linear(x.float(), self.weight.float()))
        with torch.no_grad():
            choice = scores + self.e_score_correction_bias
            N, E = choice.shape
            if cfg.n_group > 1 and cfg.topk_group < cfg.n_group:
                # Group score: the sum of its best group_score_topk biased affinities. Experts outside
                # the best topk_group groups can't be chosen (-inf: a 0 would beat negative scores).
                grouped = choice.view(N, cfg.n_group, E // cfg.n_group)
                group_score = grouped.topk(cfg.group_score_topk, dim=-1).values.sum(-1)
                best_groups = group_score.topk(cfg.topk_group, dim=-1).indices
                allowed = torch.zeros(N, cfg.n_group, dtype=torch.bool).scatter_(1, best_groups, True)
                allowed = allowed.unsqueeze(-1).expand(N, cfg.n_group, E // cfg.n_group).reshape(N, E)
                choice = choice.masked_fill(~allowed, float("-inf"))
            ids = choice.topk(cfg.num_experts_per_tok, dim=-1).indices
        weights = scores.gather(1, ids)
        if cfg.norm_topk_prob and cfg.num_experts_per_tok > 1:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return ids, weights * cfg.routed_scaling_factor, scores


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList(MLP(cfg.hidden_size, cfg.moe_intermediate_size)
                                     for _ in range(cfg.n_routed_experts))
        if cfg.n_shared_experts:
            self.shared_experts = MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)
        else:
            self.shared_experts = None
        self.last_routing = None  # (ids, scores) of the last forward, for the balance loss

    def forward(self, x):
        B, T, h = x.shape
        flat = x.reshape(B * T, h)
        ids, weights, scores = self.gate(flat)
        self.last_routing = (ids, scores, B, T)
        out = torch.zeros_like(flat)
        counts = torch.bincount(ids.flatten(), minlength=len(self.experts)).tolist()
        for e, n in enumerate(counts):
            if n == 0:
                continue
            token, slot = torch.where(ids == e)
            y = self.experts[e](flat[token]) * weights[token, slot].unsqueeze(-1).to(flat.dtype)
            out.index_add_(0, token, y)
        if self.shared_experts is not None:
            out = out + self.shared_experts(flat)
        return out.view(B, T, h)

    def balance_term(self):
        """Eq. 17-20 without alpha, for the last forward: sum_i f_i P_i, averaged over sequences.
        f counts the top-K of the unbiased affinities (Eq. 18's Topk({s_jt}, K_r)), as nextn does."""
        ids, scores, B, T = self.last_routing
        E, K = scores.shape[1], ids.shape[1]
        ids = scores.detach().topk(K, dim=-1).indices
        p = (scores / scores.sum(-1, keepdim=True)).view(B, T, E).mean(1)
        with torch.no_grad():
            f = torch.zeros(B, E, dtype=scores.dtype)
            f.scatter_add_(1, ids.view(B, T * K), torch.ones(B, T * K, dtype=scores.dtype))
            f = f * (E / (K * T))
        return (f * p).sum(-1).mean()


class DecoderLayer(nn.Module):
    def __init__(self, cfg, index):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MoE(cfg) if cfg.is_moe_layer(index) else MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, cos, sin, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class SharedHead(nn.Module):
    def __init__(self, cfg, head):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.head = head  # the main model's output head (shared, not a copy)


class MTPLayer(DecoderLayer):
    """MTP module k, stored as layer num_hidden_layers + k - 1: a decoder layer plus the
    projection of its input (sequential kind) and its own norm before the shared head."""

    def __init__(self, cfg, index, embed_tokens, head):
        super().__init__(cfg, index)
        self.kind = cfg.mtp_kind
        self.embed_tokens = embed_tokens  # shared with the main model
        if self.kind == "sequential":
            self.enorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
            self.hnorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
            self.eh_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.shared_head = SharedHead(cfg, head)

    def block_input(self, previous_hidden, next_embeddings):
        if self.kind == "parallel":
            return previous_hidden
        return self.eh_proj(torch.cat([self.enorm(next_embeddings), self.hnorm(previous_hidden)], dim=-1))


class OutputHead(nn.Module):
    """lm_head, or a view of the embedding when tie_word_embeddings."""

    def __init__(self, cfg, embed_tokens):
        super().__init__()
        if cfg.tie_word_embeddings:
            self.tied = [embed_tokens]  # a list: not registered twice as a submodule
        else:
            self.tied = None
            self.weight = nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size))

    def forward(self, x):
        return F.linear(x, self.tied[0].weight if self.tied else self.weight)


class Backbone(nn.Module):
    def __init__(self, cfg, head):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        L = cfg.num_hidden_layers
        layers = [DecoderLayer(cfg, i) for i in range(L)]
        layers += [MTPLayer(cfg, L + k - 1, self.embed_tokens, head)
                   for k in range(1, cfg.num_nextn_predict_layers + 1)]
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DeepseekV3MTP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.rotary = Rotary(cfg)
        self.lm_head = OutputHead(cfg, None)  # rebound below when tied
        self.model = Backbone(cfg, self.lm_head)
        if cfg.tie_word_embeddings:
            self.lm_head.tied = [self.model.embed_tokens]

    @property
    def main_layers(self):
        return self.model.layers[:self.cfg.num_hidden_layers]

    @property
    def mtp_layers(self):
        return self.model.layers[self.cfg.num_hidden_layers:]

    def moe_layers(self):
        return [l.mlp for l in self.model.layers if isinstance(l.mlp, MoE)]

    def init_weights(self, generator=None):
        """HF-style initialisation: N(0, initializer_range) matrices, unit norms, zero bias."""
        with torch.no_grad():
            for p in self.parameters():
                if p.dim() == 1:
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, self.cfg.initializer_range, generator=generator)
            for moe in self.moe_layers():
                moe.gate.e_score_correction_bias.zero_()

    def forward(self, input_ids, run_mtp=True, caches=None, start=0):
        """input_ids [B, T] -> (main logits [B, T, V], per-depth MTP logits [B, T-k, V]).
        With `caches` (one dict per main layer) the tokens continue at position `start`."""
        cfg = self.cfg
        B, T = input_ids.shape
        emb = self.model.embed_tokens(input_ids)
        cos, sin = self.rotary(start, T)
        h = emb
        for i, layer in enumerate(self.main_layers):
            h = layer(h, cos, sin, None if caches is None else caches[i])
        logits = self.lm_head(self.model.norm(h))
        mtp_logits = []
        if run_mtp:
            previous = h
            for k, module in enumerate(self.mtp_layers, start=1):
                span = T - k  # positions 0..T-k-1 have a target t_{i+k+1} in the window
                if span <= 0:
                    break
                c, s = self.rotary(0, span)
                source = previous if module.kind == "sequential" else h
                x = module.block_input(source[:, :span], emb[:, k:])
                previous = module(x, c, s)
                mtp_logits.append(module.shared_head.head(module.shared_head.norm(previous)))
        return logits, mtp_logits


def objective(model, logits, mtp_logits, labels, segment_ids=None, mtp_lambda=0.3,
              sequence_alpha=0.0, ignore_index=-100):
    """L = L_main + lambda/D sum_k L_MTP^k + alpha sum_layers L_bal (Eq. 17, 24, 25).

    labels [B, T] = the window shifted by one; segment_ids [B, T+1] (optional): a depth-k target
    at position i counts only when positions i and i+k+1 of the window are in the same document.
    Returns a dict of scalar tensors: total, main, mtp (list), balance.
    """
    V = logits.shape[-1]
    main_sum = F.cross_entropy(logits.reshape(-1, V).float(), labels.reshape(-1),
                               ignore_index=ignore_index, reduction="sum")
    count = max(int((labels != ignore_index).sum()), 1)
    main = main_sum / count
    mtp = []
    T = labels.shape[1]
    for k, lk in enumerate(mtp_logits, start=1):
        targets = labels[:, k:].clone()
        if segment_ids is not None:
            crosses = segment_ids[:, :T - k] != segment_ids[:, k + 1:]
            targets[crosses] = ignore_index
        s = F.cross_entropy(lk.reshape(-1, V).float(), targets.reshape(-1),
                            ignore_index=ignore_index, reduction="sum")
        mtp.append(s / count)  # Eq. 24 divides by T, like the main loss
    total = main
    if mtp:
        total = total + mtp_lambda / len(mtp) * sum(mtp)
    balance = torch.zeros(())
    if sequence_alpha:
        for moe in model.moe_layers():
            if moe.last_routing is not None:
                balance = balance + sequence_alpha * moe.balance_term()
    total = total + balance
    return {"total": total, "main": main, "mtp": mtp, "balance": balance}


def shared_copy_names(cfg):
    """The MTP modules' physical copies of the shared embedding and head in a checkpoint."""
    names = []
    for k in range(1, cfg.num_nextn_predict_layers + 1):
        prefix = "model.layers.%d." % (cfg.num_hidden_layers + k - 1)
        names += [prefix + "embed_tokens.weight", prefix + "shared_head.head.weight"]
    return names


def parameter_by_name(model, name):
    """The parameter or buffer of an HF name (module paths equal checkpoint names)."""
    obj = model
    for part in name.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def own_tensor_names(model):
    """HF names of the tensors the model owns: every checkpoint tensor but the shared copies."""
    shared = set(shared_copy_names(model.cfg))
    return [n for n in model.state_dict().keys() if n not in shared]


def load_state(model, tensors, warn=print):
    """Loads HF-named tensors. Every name the model has must be present and nothing else."""
    cfg = model.cfg
    own = own_tensor_names(model)
    expected = set(own) | set(shared_copy_names(cfg))
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        raise ValueError("checkpoint does not fit the config: missing %s, unexpected %s" % (missing[:5], unexpected[:5]))
    main_embed = tensors["model.embed_tokens.weight"]
    main_head = main_embed if cfg.tie_word_embeddings else tensors["lm_head.weight"]
    for name in shared_copy_names(cfg):
        reference = main_embed if name.endswith("embed_tokens.weight") else main_head
        if not torch.equal(tensors[name], reference):
            warn("warning: %s differs from the main model's tensor; the shared one is used" % name)
    with torch.no_grad():
        for name in own:
            target = parameter_by_name(model, name)
            source = tensors[name]
            if tuple(source.shape) != tuple(target.shape):
                raise ValueError("tensor %s has shape %s, the model expects %s"
                                 % (name, tuple(source.shape), tuple(target.shape)))
            target.copy_(source.to(target.dtype))
