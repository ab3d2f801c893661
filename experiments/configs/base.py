"""The base of every dataset's config: the method's settings, its variants and the helpers.

Each dataset's config (`synthetic.py`, `h36m.py`, `mpi_inf_3dhp.py`, ...) calls
`base.get_config(variant)` and sets its data (`c.data`) and its sizes. This file holds what they
share: the model, the losses, the cascade, the training loop and the evaluation, for

- ours, the default: one fused pose per frame, a generic body in mm, inside/anatomy/stance
  priors; every training example's masks fitted from the standing template before the first
  step, the fits amortized by the network (fit first); its ablations no_fit (the network alone,
  no fits), no_stance, no_inside, no_bend, no_proportion, no_sym (one ingredient off),
  capsule_body (the body drawn at one width in crop units), coarse_to_fine (a wide body for the
  first 900 steps), refine (no_fit + a 16-step network-in-the-loop fit), refine_cache (its fits
  kept per example), pretrained_physique (no_fit with a Physique network pre-trained on random
  poses of the procedural body, frozen, in place of the fixed body), adapted_physique (the same
  network adapted at a tenth of the detector's rate);
- paper: the paper's recipe (Skeleton Mask, learned Physique network, geodesic weights, the
  cascade structure -> shape -> joint), and its ablations no_physique, no_geodesic, no_cascade,
  batchnorm, single_view, capsules (a fixed capsule body, background weights scaled down, a
  standing-skeleton start; one 5,000-step stage at 1e-4);
- oracle: the default's detector trained on ground-truth 2.5D targets, the *supervised*
  reference.

The step counts and sizes here are the synthetic dataset's (CPU-sized); other datasets set theirs.
"""

import ml_collections

# The paper's recipe and its ablations (built on the settings below), ours and its ablations,
# and the supervised reference.
PAPER_VARIANTS = ("paper", "no_physique", "no_geodesic", "no_cascade", "batchnorm", "single_view",
                  "capsules")
OURS_VARIANTS = ("default", "no_fit", "no_stance", "no_inside", "no_bend", "no_proportion",
                 "no_sym", "refine", "refine_cache", "capsule_body", "coarse_to_fine",
                 "pretrained_physique", "adapted_physique")
VARIANTS = OURS_VARIANTS + PAPER_VARIANTS + ("oracle",)


def stage(name, steps, trainable, learning_rate, body_scale=1.0, physique_lr_scale=1.0,
          **loss_weights):
    """One cascade stage: `steps` steps training the `trainable` modules with these weights.

    body_scale widens the drawn Physique Mask of a fixed body (capsules, body) by that factor:
    > 1 for a coarse stage before the fine one. physique_lr_scale multiplies the physique
    network's rate (< 1: a pre-trained network adapted slowly beside the detector).
    """
    return ml_collections.ConfigDict(dict(
        name=name, steps=steps, trainable=tuple(trainable), learning_rate=learning_rate,
        body_scale=float(body_scale),
        lr_scale=ml_collections.ConfigDict(dict(detector=1.0, physique=float(physique_lr_scale))),
        loss_weights=ml_collections.ConfigDict(loss_weights)))


def mix_source(name, weight, *, data_dir="", options=None, train_split="train", views=()):
    """One extra training source of `c.data.mix`: a builder of data_builders/ and its share.

    Args:
        name: dataset name (a key of `data_builders.BUILDERS`).
        weight: share of every training batch, relative to `c.data.weight` and the other entries.
        data_dir: tfds data directory; "" = the same as `c.data.data_dir`.
        options: builder options (dict), e.g. root_dir and image_size (= the primary's crop size).
        train_split: the split read for training.
        views: () = all views; else indices of the views to use.
    """
    return ml_collections.ConfigDict(dict(
        name=name, weight=float(weight), data_dir=data_dir,
        options=ml_collections.ConfigDict(dict(options or {})), train_split=train_split,
        views=tuple(views)))


def set_stage_steps(c, cascade_steps, single_steps):
    """Sets the steps of the paper's three cascade stages, or shares `single_steps` among the
    stages of the other variants as their steps are shared now (each stage at least one)."""
    if len(c.stages) == 3:
        for stage_config, n in zip(c.stages, cascade_steps):
            stage_config.steps = n
    else:
        scale_steps(c, single_steps)


def scale_steps(c, total_steps):
    """Shares `total_steps` among `c.stages` in their present proportions (each at least one)."""
    old = [int(s.steps) for s in c.stages]
    for stage_config, n in zip(c.stages, old):
        stage_config.steps = max(1, round(total_steps * n / sum(old)))


def without_fits(c):
    """Turns off the template fits, their cache and the in-loop fit (the network alone): for
    `no_fit`, and for configs whose training cannot index one split (a `data.mix`)."""
    c.loss.fit_cache = False
    c.loss.refine_steps = 0
    c.loss.fit_init_steps = 0


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    """The method's settings for `variant`; the caller sets `c.data.name` and its options."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants: {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.seed = 0

    # Data: a tfds builder of data_builders/ and its options (see its README).
    c.data = ml_collections.ConfigDict()
    c.data.name = ""                # a builder of data_builders/: set by the dataset's config
    c.data.data_dir = ""            # "" = tfds's default (~/tensorflow_datasets)
    c.data.options = ml_collections.ConfigDict()   # builder options, e.g. image_size
    c.data.build_if_missing = True  # build the dataset first when it is not there
    c.data.train_split = "train"
    c.data.val_split = "val"        # in-training evaluation, every recipe choice; "" = none
    c.data.eval_split = "test"      # read by experiments.evaluate alone, once per reported run
    c.data.num_threads = 4          # grain read threads per process
    c.data.prefetch = 16            # grain prefetch buffer (examples)
    c.data.augment = True           # photometric augmentation of training images
    c.data.views = ()               # () = all views; else indices of the views to use
    # Mixed training (input_pipeline.make_mixture): this dataset (c.data.name, also the evaluation
    # set) makes up weight / (its weight + the mix weights) of every training batch, each entry of
    # `mix` (a `mix_source(...)`) its own share. [] = this dataset alone.
    c.data.weight = 1.0
    c.data.mix = []

    # Detector (DESIGN §6): ResNet + 3 upsampling blocks + integral regression.
    c.model = ml_collections.ConfigDict()
    c.model.resnet_depth = 18
    c.model.width = 16              # base channels (64 = the full ResNet)
    c.model.norm = "group"          # "group" or "batch"
    c.model.stem = "standard"       # "standard" (7x7/2 + pool) or "light" (3x3/1, small crops)
    c.model.head_channels = 64
    c.model.num_deconv = 3
    c.model.depth_bins = 32
    c.model.depth_range_mm = 2000.0  # z in [-1, 1] spans +-depth_range/2 around the pelvis
    c.model.dtype = "float32"        # compute dtype: "float32" or "bfloat16"
    # "standing": a learned spatial prior added to the heatmap logits, initialized to a Gaussian
    # (std template_sigma) around skeleton.STANDING_TEMPLATE, so training starts from a generic
    # standing skeleton instead of every joint at the crop centre. "none": no prior.
    c.model.template = "none"
    c.model.template_sigma = 0.3

    # Shape-prior (physique) network (DESIGN §4).
    c.physique = ml_collections.ConfigDict()
    c.physique.widths = (8, 16, 32)
    # "network": the U-Net above, learned from the masks (DESIGN §4). "capsules": no parameters,
    # the Physique Mask is the skeleton drawn at the squared width `capsule_width` (a fixed body).
    c.physique.kind = "network"
    c.physique.capsule_width = 6e-3
    # "body" (needs loss.fusion): no parameters, a generic adult's bones (skeleton.BONE_RADII_MM,
    # times body_scale) drawn at their size in mm in every view, from the fused pose's depth.
    c.physique.body_scale = 1.0
    # Pre-training of the network kind before step 0 (maskpose_jax/physique_prior.py): this many
    # Adam steps (0 = none, the paper's network learned from the data's masks) on the Skeleton
    # Masks and rendered silhouettes of pretrain_examples random poses of the procedural body (no
    # mocap, no dataset split). A cascade stage that does not train "physique" keeps it frozen.
    c.physique.pretrain_steps = 0
    c.physique.pretrain_examples = 2048
    c.physique.pretrain_batch = 32
    c.physique.pretrain_lr = 3e-3

    # Losses (DESIGN §8): each term has a switch; weights live in the stages below.
    c.loss = ml_collections.ConfigDict()
    c.loss.body_width = 3e-3         # Skeleton Mask width s_b, normalized units^2
    c.loss.clip_threshold = 0.1      # L_skel only where S > threshold
    c.loss.use_geodesic = True       # weight maps W; False = uniform weights
    c.loss.background_scale = 1.0    # multiplies the stored W of background pixels (mask < 0.5)
    c.loss.cross_view = True         # project each view's pose into the other views
    c.loss.phys_cross_view = False   # physique network on cross-view masks too (costly)
    c.loss.use_skel = True
    c.loss.use_phys = True
    c.loss.use_sym = True
    c.loss.use_agree = True
    c.loss.supervision = "masks"     # "masks" (unsupervised) or "oracle" (ground-truth 2.5D)
    # Ours, beside the paper's terms (maskpose_jax/fused.py, losses.py):
    # fusion: one world pose per frame, every joint triangulated from the views' 2D; the mask
    # terms score its projections, and each view learns z and 2D from it ("depth", "reproject").
    c.loss.fusion = False
    c.loss.use_inside = False        # bones pay the mask's outside distance transform
    c.loss.use_cover = False         # foreground pixels pay their distance to the nearest bone
    c.loss.cover_radius = 0.05       # ... beyond this body radius, normalized crop units
    c.loss.use_proportion = False    # anatomy prior: limb proportions of a generic adult
    c.loss.use_bend = False          # anatomy prior: knees bend one way (fused path)
    c.loss.use_stance = False        # pose prior: a weak pull toward a generic standing pose
    # Network-in-the-loop fit (fused path, fixed body): the fused pose refined by this many Adam
    # steps of the stage's mask and prior terms is the depth / reproject target (SPIN-style).
    c.loss.refine_steps = 0
    c.loss.refine_lr_mm = 10.0
    # The fit's cache (SPIN's dictionary of fits): every training example's best fit so far is
    # kept in the train state and warm-starts its next fit, so fits improve over the epochs.
    c.loss.fit_cache = False
    # Before the first step, the cache is filled with fits of the standing template to every
    # training example's masks (maskpose_jax/fit_cache.py): this many Adam steps (0 = none), at
    # this many yaws (the lowest loss kept, chosen after `choose_after` steps when > 0).
    c.loss.fit_init_steps = 0
    c.loss.fit_init_restarts = 4
    c.loss.fit_init_choose_after = 0
    c.loss.fit_init_lr_mm = 20.0
    # The fit also tries every start with left and right exchanged and starts from the lower loss.
    c.loss.refine_swap = False
    # The fusion exchanges left and right in the views whose labels disagree with the others'
    # (fused.consistent_labels); the views then learn the majority's labels.
    c.loss.consistent_labels = False

    # Cascade (DESIGN §9): ordered stages; weights of terms not named are 0.
    c.stages = [
        stage("structure", 2000, ("detector",), 1e-3, skel=1.0, sym=0.1, agree=0.1),
        stage("shape", 1000, ("physique",), 1e-3, phys=1.0),
        stage("joint", 2000, ("detector", "physique"), 3e-4,
              skel=1.0, phys=1.0, sym=0.1, agree=0.1),
    ]

    # Training loop.
    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 8           # global batch (examples of V views)
    c.train.optimizer = "adam"       # "adam", "adamw" (decoupled weight decay) or "sgd" (momentum)
    c.train.weight_decay = 0.0
    c.train.grad_clip_norm = 1.0
    c.train.warmup_steps = 100       # linear warm-up at the start of every stage
    c.train.log_every = 50
    c.train.image_every = 1000       # TensorBoard images
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.eval_every = 2000        # val MPJPE during training (0 = only at the end)
    c.train.eval_examples = 256      # examples of the val split used during training

    # Evaluation (DESIGN §11).
    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 32
    c.eval.max_examples = 0          # 0 = the whole split
    c.eval.pck2d_threshold = 0.1     # fraction of the crop side

    if variant in PAPER_VARIANTS:
        return _paper_variant(c, variant)
    # Ours (the default): the paper's Physique Mask idea as a fixed generic body, its geodesic
    # weights, and what we add: one fused world pose per frame with self-supervised depth and 2D
    # (EpipolarPose-style), bones pulled inside the silhouettes, anatomy and stance priors.
    # experiments/fit.py chose the terms and weights on the val split (README, "Results").
    c.loss.fusion = True
    c.loss.use_skel = False          # the paper's clipped Skeleton Mask term: off (harness)
    c.loss.use_agree = False         # one fused pose: the views agree by construction
    c.loss.use_inside = True
    c.loss.use_proportion = True
    c.loss.use_bend = True
    c.loss.use_stance = True
    c.loss.background_scale = 0.05
    c.physique.kind = "body"
    c.model.template = "standing"
    # Fit first, then amortize (the default): before the first step every training example's
    # masks are fitted from the standing template (100 Adam steps at 30 mm, 8 yaws, the lowest
    # objective chosen after 20; ~5 min on 2 CPU cores for 3,650 examples) into the fit cache;
    # each step the in-loop fit (4 steps) refines the cached fit or the network's fused pose,
    # whichever scores lower, and the result is every view's depth / reproject target.
    c.loss.fit_cache = True
    c.loss.refine_steps = 4
    c.loss.fit_init_steps = 100
    c.loss.fit_init_restarts = 8
    c.loss.fit_init_choose_after = 20
    c.loss.fit_init_lr_mm = 30.0
    if variant in ("no_fit", "refine", "refine_cache", "pretrained_physique", "adapted_physique"):
        # `no_fit`: the network alone learns from the mask and prior terms of its fused pose.
        without_fits(c)
    # `refine`, network in the loop without a cache: the targets are the fused pose after 16
    # Adam steps (SPIN-style). On val at 3,000 steps: P-MPJPE 154.7 against no_fit's 161.5,
    # MPJPE 238.3 against 232.5 (README). `refine_cache`: the same fit, warm-started from each
    # example's cached fit (no template fits first).
    if variant in ("refine", "refine_cache"):
        c.loss.refine_steps = 16
        c.loss.fit_cache = variant == "refine_cache"
    # skel and cover are 0 (off) but present, so that a flag can switch them on.
    weights = dict(phys=1.0, inside=1.0, sym=10.0, proportion=1.0, bend=1.0, stance=1.0,
                   depth=1.0, reproject=1.0, skel=0.0, cover=0.0)
    if variant == "oracle":
        # The same detector, data and step budget, trained on ground-truth 2.5D targets.
        c.loss.supervision = "oracle"
        without_fits(c)
        c.stages = [stage("oracle", 3000, ("detector",), 1e-3, oracle=1.0)]
        return c
    for switch in ("stance", "inside", "bend", "proportion", "sym"):
        if variant == f"no_{switch}":
            setattr(c.loss, f"use_{switch}", False)
            weights.pop(switch)
    if variant in ("pretrained_physique", "adapted_physique"):
        # `no_fit` with the paper's Physique network in place of the fixed body, pre-trained on
        # random poses of the procedural body and frozen (the stage trains the detector only;
        # adapted_physique trains it too, at a tenth of the rate, below).
        # No fits: through the network they would cost ~170 MFLOP a mask and step.
        c.physique.kind = "network"
        c.physique.pretrain_steps = 2000
    if variant == "capsule_body":
        c.physique.kind = "capsules"
        c.physique.capsule_width = 1.2e-2
    c.stages = [stage("fused", 3000, ("detector",), 3e-4, **weights)]
    if variant == "adapted_physique":
        # The pre-trained network adapts slowly (a tenth of the rate) to the training masks,
        # through the Physique Mask term alone: does it co-adapt with the detector again?
        c.stages = [stage("fused", 3000, ("detector", "physique"), 3e-4, physique_lr_scale=0.1,
                          **weights)]
    if variant == "coarse_to_fine":
        c.stages = [stage("coarse", 900, ("detector",), 3e-4, body_scale=1.5, **weights),
                    stage("fine", 2100, ("detector",), 3e-4, **weights)]
    return c


def _paper_variant(c, variant):
    """The paper's recipe (`paper`: Skeleton Mask, learned Physique network, geodesic weights,
    cascade structure -> shape -> joint) and the ablations of it."""
    if variant == "no_physique":
        c.loss.use_phys = False
    elif variant == "no_geodesic":
        c.loss.use_geodesic = False
    elif variant == "no_cascade":
        total = sum(s.steps for s in c.stages)
        c.stages = [stage("joint", total, ("detector", "physique"), 1e-3,
                          skel=1.0, phys=1.0, sym=0.1, agree=0.1)]
    elif variant == "batchnorm":
        c.model.norm = "batch"
    elif variant == "single_view":
        c.data.views = (0,)
        c.loss.cross_view = False
        c.loss.use_agree = False
    elif variant == "capsules":
        # With the paper's weights the trained model's pose scores a lower loss than the truth;
        # with a fixed body and background weights in [1, 1.15] the truth scores lowest of the
        # reference poses. One stage: there is no network to pre-train.
        c.physique.kind = "capsules"
        c.physique.capsule_width = 1.2e-2
        c.loss.phys_cross_view = True
        c.loss.background_scale = 0.05
        c.model.template = "standing"
        c.stages = [stage("capsules", 5000, ("detector",), 1e-4,
                          skel=1.0, phys=1.0, sym=0.1, agree=0.1)]
    return c
