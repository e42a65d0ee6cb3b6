"""The code for a run's settings: the fastai code that trains the same way, and a plain PyTorch
outline of what that code does, both built from one engine.settings.RunSettings.

The Train page shows these texts ("the code for these settings") so a learner can copy them into a
notebook. They are text only: nothing here runs fastai, and the app does not depend on it.
"""
from __future__ import annotations

from engine.schedule import MOMS, even_mults
from engine.settings import RunSettings

#: The parameter groups (one learning rate each) of an architecture's body + head, earliest first,
#: as engine.models.GROUP_STARTS cuts them; written here so building the text never imports torch.
GROUPS = {"resnet18": "body[:6], body[6:], head", "resnet34": "body[:6], body[6:], head",
          "resnet50": "body[:6], body[6:], head", "efficientnet_lite0": "body, head",
          "simple_cnn": "body[:2], body[2:], head"}
DEFAULT_WD = 0.01            # fastai's default weight decay: only written out when it differs
FINE_TUNE_LR_MULT = 100      # fine_tune's unfrozen stage: slice(lr / 2 / lr_mult, lr / 2)
PLACEHOLDER_FOLDER = "path/to/images"   # the data's folder in the code (the server's stays private)


def _num(x: float) -> str:
    """A number as short Python text: 0.01, 1e-05, 3."""
    return f"{float(x):.3g}"


def _folder(s: RunSettings) -> str:
    """Where the data would be: never the server's own path (it is nobody else's business)."""
    return PLACEHOLDER_FOLDER


def _data_note(s: RunSettings) -> str:
    """The data set's name for a comment, made harmless (one line, no quote tricks needed)."""
    name = " ".join(str(s.data_name or "your images").split())[:60]
    return name.replace("\\", "/") or "your images"


def _lr_text(s: RunSettings) -> str:
    return f"slice({_num(s.lr_lo)}, {_num(s.lr)})" if s.method == "unfreeze" else _num(s.lr)


def fastai_code(s: RunSettings) -> str:
    """fastai code that trains as these settings do (data, model, method, rates, seed)."""
    lines = ["from fastai.vision.all import *", "",
             f"set_seed({s.seed}, reproducible=True)",
             f"path = Path({_folder(s)!r})   # {_data_note(s)}: one sub-folder of images per class",
             "dls = ImageDataLoaders.from_folder(",
             f"    path, valid_pct={_num(s.valid_pct)}, seed={s.seed},   # the same held-out images every run",
             f"    item_tfms=Resize({s.size}),"]
    if s.augment:
        flip = "" if s.flip else "do_flip=False"
        lines.append(f"    batch_tfms=aug_transforms({flip}),   # random rotation, zoom, lighting"
                     + ("" if s.flip else " (no flips)"))
    lines.append(f"    bs={s.bs})")
    extra = "" if s.wd == DEFAULT_WD else f", wd={_num(s.wd)}"
    if not getattr(s, "train_bn", True):
        extra += ", train_bn=False"
    if s.arch == "simple_cnn":
        lines += ["", "# simple_cnn: four 3×3 conv blocks (conv, batch norm, ReLU), then fastai's head",
                  "body = nn.Sequential(ConvLayer(3, 32), ConvLayer(32, 64, stride=2),",
                  "                     ConvLayer(64, 96, stride=2), ConvLayer(96, 128, stride=2))",
                  "model = nn.Sequential(body, create_head(128, dls.c))",
                  "groups = lambda m: [params(m[0][:2]), params(m[0][2:]), params(m[1])]",
                  f"learn = Learner(dls, model, metrics=error_rate, splitter=groups{extra})"]
    else:
        arch = s.arch if s.arch.startswith("resnet") else repr(s.arch)   # a string: timm builds it
        pre = "" if s.uses_pretrained else ", pretrained=False"
        lines += ["", f"learn = vision_learner(dls, {arch}{pre}, metrics=error_rate{extra})"]
        if s.uses_pretrained:
            lines.append("# pretrained: the ImageNet body starts frozen; only the new head trains")
    precision = getattr(s, "precision", "auto")
    if precision in ("fp16", "bf16"):
        lines.append(f"learn = learn.to_{precision}()")
    lines += ["", "# learn.lr_find()   # the learning-rate finder (section 3 of the page)"]
    if s.precompute:
        lines.append("# precompute: fastai v2 recomputes the frozen body every epoch; the app "
                     "caches its output (same training, faster)")
    if s.method == "fine_tune":
        lines.append(f"learn.fine_tune({s.epochs}, base_lr={_num(s.lr)}, "
                     f"freeze_epochs={s.freeze_epochs})")
    elif s.method == "unfreeze":
        lines += ["learn.load('last_run')   # the weights the last run saved (learn.save('last_run'))",
                  "learn.unfreeze()",
                  f"learn.fit_one_cycle({s.epochs}, lr_max={_lr_text(s)})"]
    else:
        lines.append(f"learn.fit_one_cycle({s.epochs}, lr_max={_lr_text(s)})")
    return "\n".join(lines)


def _model_lines(s: RunSettings) -> list[str]:
    if s.arch == "simple_cnn":
        return ["def block(c_in, c_out, stride):   # conv 3×3, batch norm, ReLU",
                "    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),",
                "                         nn.BatchNorm2d(c_out), nn.ReLU())",
                "body = nn.Sequential(block(3, 32, 1), block(32, 64, 2), block(64, 96, 2), block(96, 128, 2))",
                "n_features = 128"]
    if s.arch.startswith("resnet"):
        weights = "'DEFAULT'" if s.uses_pretrained else "None"
        return [f"net = torchvision.models.{s.arch}(weights={weights})",
                "body = nn.Sequential(*list(net.children())[:-2])   # everything but pooling and fc",
                "n_features = net.fc.in_features"]
    return [f"net = timm.create_model('efficientnet_lite0', pretrained={s.uses_pretrained})",
            "body = nn.Sequential(net.conv_stem, net.bn1, *net.blocks, net.conv_head, net.bn2)",
            "n_features = net.num_features"]


def _one_cycle(lrs: list[float], epochs: str, pct: float, div: float) -> list[str]:
    """An optimiser and a one-cycle schedule over `lrs` (one per parameter group)."""
    peak = _num(lrs[0]) if len(set(lrs)) == 1 else "[" + ", ".join(_num(v) for v in lrs) + "]"
    return ["opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=wd)",
            f"sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr={peak}, "
            f"total_steps={epochs} * len(train_dl),",
            f"    pct_start={pct}, div_factor={div:g}, final_div_factor={1e5 / div:g},   # ends at peak / 1e5",
            f"    base_momentum={MOMS[1]}, max_momentum={MOMS[0]})   # Adam's beta1 falls as the rate rises",
            f"train(model, opt, sched, {epochs})"]


def pytorch_outline(s: RunSettings) -> str:
    """What the fastai code does, written with torch and torchvision only (an outline: fastai's
    augmentation and its head's details are summarised in comments)."""
    mean, std = s.data_config().mean, s.data_config().std
    norm = ("" if tuple(std) == (1.0, 1.0, 1.0) and not any(mean) else
            f"\n    transforms.Normalize({[round(m, 3) for m in mean]}, {[round(v, 3) for v in std]}),")
    split = GROUPS.get(s.arch, "body, head")
    n_groups = split.count(",") + 1
    lines = ["import torch, torchvision", "from torch import nn",
             "from torchvision import transforms", "", f"torch.manual_seed({s.seed})",
             "tfm = transforms.Compose([", f"    transforms.Resize({s.size}), transforms.CenterCrop({s.size}),",
             f"    transforms.ToTensor(),{norm}", "])",
             f"data = torchvision.datasets.ImageFolder({_folder(s)!r}, transform=tfm)",
             f"n_valid = int({_num(s.valid_pct)} * len(data))",
             "train_ds, valid_ds = torch.utils.data.random_split(",
             f"    data, [len(data) - n_valid, n_valid], generator=torch.Generator().manual_seed({s.seed}))"]
    if s.augment:
        lines.append("# (fastai also flips, rotates, zooms and relights each training batch at random)"
                     if s.flip else "# (fastai also rotates, zooms and relights each training batch at random)")
    lines += [f"train_dl = torch.utils.data.DataLoader(train_ds, batch_size={s.bs}, shuffle=True)",
              f"valid_dl = torch.utils.data.DataLoader(valid_ds, batch_size={s.bs})", ""]
    lines += _model_lines(s)
    lines += ["", "class ConcatPool(nn.Module):   # average and max pooling side by side",
              "    def forward(self, x):",
              "        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)", "",
              "head = nn.Sequential(   # fastai's head",
              "    ConcatPool(), nn.BatchNorm1d(2 * n_features), nn.Dropout(0.25),",
              "    nn.Linear(2 * n_features, 512, bias=False), nn.ReLU(),",
              "    nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, len(data.classes), bias=False))",
              "model = nn.Sequential(body, head)",
              f"wd = {_num(s.wd)}   # (fastai skips weight decay on batch norms and biases)",
              "# one parameter group per part, earliest layers first: each can get its own learning rate",
              f"groups = [{{'params': list(part.parameters())}} for part in ({split})]", "",
              "def train(model, opt, sched, epochs):",
              "    for epoch in range(epochs):",
              "        model.train()",
              "        for xb, yb in train_dl:",
              "            loss = nn.functional.cross_entropy(model(xb), yb)   # softmax + −ln p(actual)",
              "            loss.backward()",
              "            opt.step(); opt.zero_grad(); sched.step()",
              "        model.eval()",
              "        with torch.no_grad():",
              "            wrong = sum((model(xb).argmax(1) != yb).sum().item() for xb, yb in valid_dl)",
              "        print(epoch, 'error rate', wrong / len(valid_ds))", ""]
    freeze = ["for p in body.parameters():   # frozen: only the head learns",
              "    p.requires_grad_(False)"]
    if getattr(s, "train_bn", True):
        freeze.append("# (fastai keeps the body's batch-norm layers training: train_bn=True)")
    unfreeze = ["for p in body.parameters():", "    p.requires_grad_(True)"]
    if s.method == "fine_tune":
        if s.freeze_epochs > 0:
            lines += freeze + _one_cycle([s.lr] * n_groups, str(s.freeze_epochs), 0.99, 25.0)
        half = s.lr / 2
        lines += unfreeze + _one_cycle(even_mults(half / FINE_TUNE_LR_MULT, half, n_groups),
                                       str(s.epochs), 0.3, 5.0)
    elif s.method == "unfreeze":
        lines += ["model.load_state_dict(torch.load('last_run.pt'))   # the last run's weights"]
        lines += unfreeze + _one_cycle(even_mults(s.lr_lo, s.lr, n_groups), str(s.epochs), 0.25, 25.0)
    else:
        if s.uses_pretrained:
            lines += freeze
        lines += _one_cycle([s.lr] * n_groups, str(s.epochs), 0.25, 25.0)
    return "\n".join(lines)


__all__ = ["fastai_code", "pytorch_outline", "GROUPS"]
