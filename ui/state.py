"""Every session-state key the app uses, in one place, and the helpers that keep widget values alive.

Streamlit forgets a widget's value when the widget is not drawn (for example on another page). So a
widget owns a key like "kernels.preset", and the lasting value lives under "keep:kernels.preset",
which no widget owns: `restore` seeds the widget from it before drawing and `remember` copies back.
"""
from __future__ import annotations

from typing import Any, Iterable

import streamlit as st

KEEP = "keep:"

# Kernel Playground -----------------------------------------------------------------------------
K_SOURCE = "kernels.source"            # "sample" | "upload" | "webcam"
K_SAMPLE = "kernels.sample"            # sample image name
K_PRESET = "kernels.preset"            # preset name or "custom"
K_CELL = "kernels.cell{}"              # text of kernel cell 0..8
K_GREY = "kernels.grey"                # bool: one channel instead of three
K_DISPLAY = "kernels.display"          # "clip" | "abs" | "diverging"
K_RELU = "kernels.relu"                # bool
K_BORDER = "kernels.border"            # "zero" | "reflect" | "replicate"
K_WORKSIZE = "kernels.worksize"        # long side in pixels the photo is processed at (0 = full)
K_PX = "kernels.px"                    # walkthrough pixel, working-image coordinates
K_PY = "kernels.py"
K_LAYERS = "kernels.layers"            # number of stacked layers (1..3)
K_LAYER_PRESET = "kernels.layer{}"     # preset of stacked layer 2, 3
K_LAYER_RELU = "kernels.layer{}_relu"  # ReLU after stacked layer 1, 2
K_HIDDEN = "kernels.hidden"            # preset hidden from the learner
K_LEARN_INIT = "kernels.learn_init"
K_LEARN_STEPS = "kernels.learn_steps"
K_LEARN_RULE = "kernels.learn_rule"    # "momentum" | "plain"
K_LEARN_LR = "kernels.learn_lr"        # learning rate as a multiple of the safe rate
K_LAST_KERNEL = "kernels.last_kernel"  # last valid kernel (np.ndarray), kept when a cell is bad
K_IMAGE = "kernels.image"              # current working image (np.ndarray) and its description
K_IMAGE_NAME = "kernels.image_name"
K_UPLOAD_DIGEST = "kernels.upload_digest"
K_LEARN_RUN = "kernels.learn_run"      # settings of the last requested learning run
H_DEVICE_POLLING = "home.device_polling"
K_URL_LOADED = "kernels.url_loaded"
K_IMAGE_ERROR = "kernels.image_error"
K_UPLOAD = "kernels.upload"            # file uploader: the photo
K_CAMERA = "kernels.camera"            # webcam photo
K_ZOOM = "kernels.zoom"                # chart: enlarged pixels; its selection is the clicked pixel
K_CHANNEL = "kernels.channel"          # radio: colour channel of the walkthrough
K_PATCH_FIG = "kernels.patch"          # chart: the 3×3 patch around the pixel
K_KERNEL_FIG = "kernels.kern"          # chart: the kernel beside it
K_PRODUCTS_FIG = "kernels.prods"       # chart: the nine products
K_BORDER_FIG = "kernels.border_{}"     # chart: the corner of the output with border rule <name>
K_COLLAPSE_FIG = "kernels.collapse"    # chart: the 5×5 kernel two linear layers collapse into
K_LEARN_GO = "kernels.learn_go"        # button: run gradient descent on the hidden kernel
K_LEARN_FIG = "kernels.learn_fig"      # chart: the learned weights and the loss, animated
K_ACT = "kernels.act"                  # non-linearity between stacked layers: "relu" | "sigmoid"
K_ACT_FIG = "kernels.act_fig"          # chart: ReLU and sigmoid side by side
K_CROP = "kernels.crop"                # side of the crop whose raw numbers "the photo as numbers" shows
K_TENSOR_FIG = "kernels.tensor_{}"     # chart: the crop's numbers in channel <red|green|blue>

# SGD ----------------------------------------------------------------------------------------------
S_URL_LOADED = "sgd.url_loaded"
S_LR = "sgd.lr"                        # learning rate (float, a value of the log-spaced slider)
S_STEPS = "sgd.steps"                  # number of training steps
S_BATCH = "sgd.batch"                  # mini-batch size; 0 = full batch (gradient descent)
S_OPTIMIZER = "sgd.optimizer"          # "sgd" | "momentum" | "adam"
S_NOISE = "sgd.noise"                  # scale of the uniform noise added to y
S_N = "sgd.n"                          # number of points
S_SEED = "sgd.seed"                    # seed of the points (and of the mini-batch shuffling)
S_A1 = "sgd.a1"                        # start slope
S_A2 = "sgd.a2"                        # start intercept
S_LOGY = "sgd.logy"                    # bool: loss axis on a log scale
S_SURFACE3D = "sgd.surface3d"          # bool: also draw the loss surface in 3D
S_LINE_BY_LINE = "sgd.line_by_line"    # bool: four animation frames per step, one per code line
S_SPEED = "sgd.speed"                  # milliseconds per animation frame
S_COMPARE = "sgd.compare"              # text: learning rates to compare, comma-separated
S_PRESET = "sgd.preset.{}"             # button: preset <name> (spaces as underscores)
S_ANIMATION = "sgd.animation"          # chart: the run, played in the browser
S_SURFACE3D_FIG = "sgd.surface3d_chart"  # chart: the loss surface in 3D
S_QUADRATIC_FIG = "sgd.quadratic"      # chart: three balls on f(w) = w²
S_COMPARE_FIG = "sgd.compare_chart"    # chart: the compared learning rates
S_BETA = "sgd.beta"                    # momentum β (0…0.99), used when the optimizer is "momentum"
S_SCORE = "sgd.score{}"                # softmax box: raw score of class 1, 2, 3
S_ACTUAL = "sgd.actual"                # softmax box: index of the actual class (0, 1, 2)
S_SOFTMAX_FIG = "sgd.softmax_chart"    # chart: scores -> probabilities

# Fit and overfit ----------------------------------------------------------------------------------
O_URL_LOADED = "overfit.url_loaded"
O_CURVE = "overfit.curve"              # the curve the points come from: "sine" | "cubic"
O_N = "overfit.n"                      # number of points (training and held-out together)
O_NOISE = "overfit.noise"              # standard deviation of the noise added to y
O_VALID = "overfit.valid"              # share of the points held out
O_SEED = "overfit.seed"                # seed of the points and of the split
O_DEGREE = "overfit.degree"            # degree of the fitted polynomial (1..15)
O_WD = "overfit.wd"                    # weight decay of the fit (a value of the slider's steps)
O_TRUTH = "overfit.truth"              # bool: draw the true curve
O_LOGY = "overfit.logy"                # bool: loss-vs-degree on a log scale
O_FIT_FIG = "overfit.fit_fig"          # chart: the points and the fitted polynomial
O_DEGREE_FIG = "overfit.degree_fig"    # chart: training and held-out loss against the degree

# Session ------------------------------------------------------------------------------------------
SESSION_OWNER = "session.owner"       # opaque token naming this browser session's jobs, data and runs

# Train --------------------------------------------------------------------------------------------
T_SOURCE = "train.source"              # "digits" | "pets" | "zip" | "urls" | "folder"
T_PETS_LABELS = "train.pets_labels"    # "breeds" | "species"
T_FOLDER = "train.folder"              # text: a folder on the server
T_VALID_PCT = "train.valid_pct"        # share held out for validation
T_SEED = "train.seed"                  # seed of the split, the order and the weights
T_AUGMENT = "train.augment"            # bool: training augmentation (show_batch shows it)
T_PRECOMPUTE = "train.precompute"      # bool: train a frozen body's head on cached features
T_ARCH = "train.arch"                  # architecture name (engine.models.ARCHS)
T_PRETRAINED = "train.pretrained"      # bool
T_CLEANED = "train.cleaned"            # data set handed over by the Explorer's retrain button
T_SIZE = "train.size"                  # image side in pixels
T_BS = "train.bs"                      # batch size
T_PRECISION = "train.precision"        # "auto" | "fp32" | "bf16" | "fp16" (engine.settings.PRECISIONS)
T_TRAIN_BN = "train.train_bn"          # bool: a frozen body's batch norm still trains (fastai's default)
T_LR = "train.lr"                      # learning rate used next (float; written by train_settings.use_lr)
T_LR_LO = "train.lr_lo"                # lower end of slice(lo, hi) after unfreezing
T_METHOD = "train.method"              # "fit_one_cycle" | "fine_tune" | "unfreeze"
T_EPOCHS = "train.epochs"
T_FREEZE_EPOCHS = "train.freeze_epochs"
T_LR_PICK = "train.lr_pick"            # plotly selection widget of the LR-finder figure
T_JOB = "train.job_id"                 # id of this session's current job (lasting, no widget)
T_DATASET = "train.dataset"            # dict describing the prepared data set (lasting)
T_DATA_ERROR = "train.data_error"      # last data error sentence
T_DL_REPORT = "train.dl_report"        # last URL download: {"lines": [...], "failed": [{class, url, reason}]}
T_URL_LOADED = "train.url_loaded"
T_LAST_RESULT = "train.last_result"    # dict: last finished job's summary, for the coach and tables
T_LR_FIND = "train.lr_find"            # last LR-finder result as a dict (lrs, losses, suggestions)
T_MODEL_STATE = "train.model_state"    # weights of the session's model between jobs (CPU tensors)
T_CONSUMED = "train.consumed"          # id of the last job whose outcome the page took in
T_JOB_ERROR = "train.job_error"        # sentence of the last failed (or unwatched, cancelled) job
T_VERIFY = "train.verify"              # last image check: {"folder", "bad": [(path, reason)]}
T_PRECOMPUTE_OFF = "train.precompute_off"  # the greyed precompute checkbox (while it cannot apply)
T_VERIFY_BTN = "train.verify_btn"      # button: open every image of the data set
T_QUARANTINE = "train.quarantine"      # button: move the unreadable files to quarantine
T_PETS_DL = "train.pets_dl"            # button: download Oxford-IIIT Pet
T_ZIP = "train.zip"                    # file uploader: a zip of class folders
T_ZIP_USE = "train.zip_use"            # button: extract the uploaded zip and use it
T_URL_N = "train.url_n"                # number of URL-list classes
T_URL_NAME = "train.url_name{}"        # class name of URL list i
T_URL_TEXT = "train.url_text{}"        # addresses of URL list i, one per line
T_URL_FILES = "train.url_files"        # file uploader: urls_<class>.txt files
T_URL_DL = "train.url_dl"              # button: download the URL lists
T_DL_FAILED = "train.dl_failed"        # table of the addresses a download could not use
T_DL_CANCEL = "train.dl_cancel"        # button: cancel the download
T_COUNTS_FIG = "train.counts_fig"      # chart: images per class and split
T_LR_FIND_BTN = "train.lr_find_btn"    # button: run the LR finder
T_USE_LR = "train.use_{}"              # button: use the LR finder's suggestion <name>
T_LR_LIVE_FIG = "train.lr_live_fig"    # chart: the LR finder's curve while it runs
T_LR_CANCEL = "train.lr_cancel"        # button: cancel the LR finder
T_START = "train.start"                # button: Train
T_SCHED_FIG = "train.sched_fig"        # chart: the learning-rate schedule preview
T_CANCEL = "train.cancel"              # button: cancel training
T_LOSS_FIG = "train.loss_fig{}"        # chart: loss per batch ("" when finished, "_live" running)
T_EPOCH_FIG = "train.epoch_fig{}"      # chart: losses and error rate per epoch (same suffixes)
T_TABLE = "train.table{}"              # the epoch table (same suffixes)
T_RUNS_TABLE = "train.runs_table"      # table of the session's saved runs
T_RUN_PICK = "train.run_pick"          # selectbox: a saved run
T_RUN_RELOAD = "train.run_reload"      # button: show the picked run's curves again
T_LR_PICKED = "train.lr_picked"        # the LR finder's pick after unfreezing (lasting, no widget)
T_LR_TO = "train.lr_to_{}"             # button: put the pick into "lo" or "hi" of slice(lo, hi)
T_LR_LESSON = "train.lr_lesson"        # button: lo = the finder's valley, hi = frozen rate / 10
T_CODE = "train.code_{}"               # the code for these settings: "fastai" | "pytorch" block
T_WD = "train.wd"                      # weight decay (RunSettings.wd)
T_PS = "train.ps"                      # dropout in the head (RunSettings.ps)
T_EXPERIMENT = "train.exp_{}"          # button: train the lesson's experiment <name>
T_EXP_NOTE = "train.exp_note"          # the experiment the last Train click ran (lasting, no widget)
T_COMPARE = "train.compare"            # multiselect: 2-4 saved runs to put side by side
T_COMPARE_FIG = "train.compare_{}"     # chart: the compared runs' "loss" | "error" curves
T_COMPARE_TABLE = "train.compare_table"  # table: the settings that differ between the runs

# Explorer -----------------------------------------------------------------------------------------
E_URL_LOADED = "explore.url_loaded"
E_RUN = "explore.run"                  # id of the run shown (selectbox; a ?run= link sets it)
E_SHARED = "explore.shared"            # id of a run opened from a link (kept in the run list)
E_CM_MODE = "explore.cm_mode"          # "counts" | "rows" (each row divided by its total)
E_CM = "explore.cm"                    # plotly selection widget of the confusion matrix
E_CELL = "explore.cell"                # (actual index, predicted index) clicked, or None (lasting)
E_MIN_VAL = "explore.min_val"          # most_confused threshold
E_K = "explore.k"                      # number of top-loss tiles
E_ORDER = "explore.order"              # "largest" | "smallest" losses first
E_CAM_ALPHA = "explore.cam_alpha"      # Grad-CAM overlay opacity, 0..1
E_CMAP = "explore.cmap"                # "cividis" | "viridis"
E_CAM_TILE = "explore.cam.{}"          # toggle: Grad-CAM on top-loss tile of item i
E_CAMS = "explore.cams"                # {(run id, path, class): Grad-CAM map} computed this session
E_MODEL = "explore.model"              # (run id, engine.models.Checkpoint) loaded for this session
E_DECISIONS = "explore.decisions"      # {run id: {file path: "keep" | "delete" | "move:<class>"}}
E_DECISION = "explore.dec.{}"          # selectbox of one image in the cleaner (hash of its path)
E_CLEAN_SPLIT = "explore.clean_split"  # "valid" | "train"
E_CLEAN_CLASS = "explore.clean_class"  # class folder shown in the cleaner
E_CLEAN_N = "explore.clean_n"          # images shown per class in the cleaner
E_TRAIN_LOSSES = "explore.train_losses"  # {(run id, class): [(path, loss, predicted class)]} scored on demand
E_JOURNAL = "explore.journal"          # {run id: id of the last applied cleaning journal}
E_CLEAN_MSG = "explore.clean_msg"      # ("success" | "error", sentence) after apply / undo
E_RETRAIN = "explore.retrain_settings" # settings dict of the run to retrain (read by the Train page)
E_PRED_SOURCE = "explore.pred_source"  # "upload" | "webcam" | "valid"
E_PRED_ITEM = "explore.pred_item"      # index of the validation image to predict
E_PREDICTION = "explore.prediction"    # last prediction: dict (run, name, probs, seconds, cam)
E_PRED_ERROR = "explore.pred_error"    # last upload error sentence
E_DEMO = "explore.demo"                # button: make a quick demo run
E_CELL_CLOSE = "explore.cell_close"    # button: close the images of a clicked matrix cell
E_APPLY = "explore.apply"              # button: carry out the cleaner's decisions
E_UNDO = "explore.undo"                # button: undo the last applied cleaning
E_RETRAIN_GO = "explore.retrain"       # button: hand the run's settings to the Train page
E_UPLOAD = "explore.upload"            # file uploader of the photo to predict
E_CAMERA = "explore.camera"            # webcam photo to predict
E_PROBS = "explore.probs"              # probability chart of the prediction
E_DOWNLOAD = "explore.download"        # download button of the model zip
E_CELL_IMAGES = "explore-cell-images"  # container of a clicked cell's images (CSS .st-key-<key>)
E_CLEAN_GRID = "explore-cleaner-grid"  # container of the cleaner's images (CSS .st-key-<key>)
E_IN_SOURCE = "explore.in_source"      # Inside tab: "valid" | "upload"
E_IN_ITEM = "explore.in_item"          # Inside tab: index of the validation image
E_IN_UPLOAD = "explore.in_upload"      # Inside tab: file uploader
E_IN_KVIEW = "explore.in_kview"        # Inside tab: kernels "rgb" | "channels"
E_IN_KERNEL = "explore.in_kernel"      # Inside tab: the learned kernel picked (its index)
E_IN_TOP = "explore.in_top"            # Inside tab: channels shown per stage
E_IN_STAGE = "explore.in_stage"        # Inside tab: stage of the enlarged map (index)
E_IN_CHANNEL = "explore.in_channel"    # Inside tab: channel of the enlarged map
E_IN_ALPHA = "explore.in_alpha"        # Inside tab: opacity of the enlarged map over the image
E_IN_KERNEL_FIG = "explore.in_kernel_fig"  # chart: the learned kernels (a click picks one)
E_IN_FMAP_FIG = "explore.in_fmap{}"    # chart: the feature maps of stage i (a click picks one)
E_IN_MAPS = "explore.in_maps"          # (run id, image key, feature maps) computed this session
E_IN_PLAY = "explore.in_play"          # link button: open the picked kernel in the playground
E_IN_SLICE_FIG = "explore.in_slice_{}"  # chart: the picked kernel's <red|green|blue|grey> numbers


def owner_token() -> str:
    """This browser session's opaque owner token (made once, never shown): it names the session's
    jobs, uploaded data and runs, so two sessions never see each other's."""
    import secrets

    token = st.session_state.get(SESSION_OWNER)
    if not token:
        try:   # a reload keeps its token through the cookie persist_owner_cookie() set
            token = st.context.cookies.get(OWNER_COOKIE)
        except Exception:
            token = None
        if not _well_formed(token):
            token = secrets.token_urlsafe(16)
        st.session_state[SESSION_OWNER] = token
    return token


OWNER_COOKIE = "dllab_owner"
COOKIE_MAX_AGE = 30 * 24 * 3600         # seconds the owner cookie lasts
COOKIE_MARK = "dllab-owner-cookie"      # id of an empty span that marks the cookie element
COOKIE_HIDE_CSS = ("[data-testid='stElementContainer']:has(#" + COOKIE_MARK + ")"
                   "{display: none}")


def _well_formed(token: object) -> bool:
    import re
    return isinstance(token, str) and re.fullmatch(r"[A-Za-z0-9_-]{22}", token) is not None


def persist_owner_cookie() -> None:
    """Keep the owner token in a browser cookie, so a reload (a new Streamlit session) finds the
    same jobs, uploads and runs. app.py calls it on every run of every page.

    st.context.cookies holds the cookies the browser sent when this session connected; while they
    lack the token, every run sends a tiny script that sets it (SameSite=Strict, path=/, 30 days,
    Secure over https). Sending it on each run, not once, matters: a run stopped by st.rerun()
    before Streamlit flushed its messages drops them. React keeps an unchanged element, so the
    script runs once per page load. Its element container is hidden (display: none), so it takes
    no space either. The token matches [A-Za-z0-9_-]{22}, so it is safe inside the script.
    """
    token = owner_token()
    try:
        present = st.context.cookies.get(OWNER_COOKIE)
    except Exception:  # no browser context at all: nothing to keep
        return
    if present == token or not _well_formed(token):
        return
    st.html(f"<style>{COOKIE_HIDE_CSS}</style><span id='{COOKIE_MARK}'></span><script>"
            f"document.cookie = '{OWNER_COOKIE}={token}; path=/; max-age={COOKIE_MAX_AGE}; "
            "SameSite=Strict' + (location.protocol === 'https:' ? '; Secure' : '');</script>",
            unsafe_allow_javascript=True)


def keep_key(key: str) -> str:
    return KEEP + key


def restore(key: str, default: Any) -> None:
    """Before drawing the widget `key`: seed it from its lasting value (or the default)."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(keep_key(key), default)


def remember(keys: Iterable[str]) -> None:
    """After drawing: copy widget values to keys no widget owns, so they survive page switches."""
    for key in keys:
        if key in st.session_state:
            st.session_state[keep_key(key)] = st.session_state[key]


def set_value(key: str, value: Any) -> None:
    """Change a widget's value from code (before the widget is drawn in this run)."""
    st.session_state[key] = value
    st.session_state[keep_key(key)] = value


def get(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, st.session_state.get(keep_key(key), default))
