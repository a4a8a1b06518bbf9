"""The roadmap as data: phases 0-6, their milestones and success criteria, and the cross-phase QA criteria.

Everything here is transcribed from the seed specification (``shared/seed/roadmap-and-qa-spec.txt``):
section 4 "Master Implementation Roadmap" gives the seven phases (deliverables, success criteria,
dependencies, risks, mitigations, resources, cost); section 2 gives the tracker's default milestone for
phase 0; section 5 gives the cross-phase QA criteria. Texts are kept verbatim so that
``tests/harness/test_roadmap.py`` can check that nothing was dropped. The one addition is the
``project`` milestone: criteria this project sets itself (ARCHITECTURE.md, issue #4) that the seed has
no line for, such as TF-vs-Flax speed. It is labelled as such wherever it is shown.

Each criterion has a stable id ``<milestone prefix>.<slug>`` (``P2.moe_balance``). ``harness.roadmap.criteria``
binds ids to asv benchmarks; this module knows nothing of measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Criterion:
    """One success criterion: a stable id and the roadmap's own wording."""

    id: str
    text: str


@dataclass(frozen=True)
class Milestone:
    """A set of criteria that is complete only when all of its measurable criteria pass.

    ``phase_id`` is ``None`` for cross-phase milestones (section 5 and the project's own criteria).
    """

    id: str
    name: str
    phase_id: str | None
    source: str
    criteria: tuple[Criterion, ...]
    target_date: str | None = None
    validation_tests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resources:
    """A phase's resource requirements as the seed states them."""

    team_size: int
    gpu_hours: int
    storage_tb: int
    compute_instances: int


@dataclass(frozen=True)
class Phase:
    """One roadmap phase (seed section 4.1). Its success criteria form the milestone ``M<number>``."""

    id: str
    number: int
    name: str
    description: str
    duration_weeks: int
    dependencies: tuple[str, ...]
    deliverables: tuple[str, ...]
    milestone: Milestone
    risks: tuple[str, ...]
    mitigations: tuple[str, ...]
    resources: Resources
    estimated_cost: float

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """The success criteria of this phase's milestone (a phase is done when its milestone is)."""
        return self.milestone.criteria

    @property
    def risk_mitigations(self) -> tuple[tuple[str, str], ...]:
        """(risk, mitigation) pairs; the seed lists them in matching order."""
        return tuple(zip(self.risks, self.mitigations))


def _c(*pairs: tuple[str, str]) -> tuple[Criterion, ...]:
    return tuple(Criterion(cid, text) for cid, text in pairs)


def _phase(number: int, name: str, description: str, weeks: int, deps: tuple[str, ...],
           deliverables: tuple[str, ...], criteria: tuple[Criterion, ...], risks: tuple[str, ...],
           mitigations: tuple[str, ...], resources: Resources, cost: float) -> Phase:
    pid = f"phase_{number}"
    milestone = Milestone(f"M{number}", f"Phase {number} success criteria", pid, "seed 4.1", criteria)
    return Phase(pid, number, name, description, weeks, deps, deliverables, milestone, risks, mitigations,
                 resources, cost)


PHASES: tuple[Phase, ...] = (
    _phase(
        0, "Development Environment & Infrastructure Setup",
        "Establish development infrastructure, tooling, and foundational components", 4, (),
        ("Conda/Docker environment configurations",
         "GPU acceleration setup with CUDA 12.4+",
         "Testing framework and validation pipeline",
         "Jupyter development workflow templates",
         "Infrastructure scaling strategy documentation"),
        _c(("P0.tf_gpu", "TensorFlow 2.15+ working with GPU acceleration"),
           ("P0.dev_tools", "All development tools operational"),
           ("P0.synthetic_validation", "Testing framework validates synthetic data"),
           ("P0.doc_standards", "Documentation standards established")),
        ("CUDA compatibility issues", "Hardware procurement delays", "Environment configuration complexity"),
        ("Use pre-configured conda environments", "Have backup hardware options",
         "Create detailed setup documentation"),
        Resources(team_size=2, gpu_hours=100, storage_tb=1, compute_instances=2), 5000.0,
    ),
    _phase(
        1, "Core Components Implementation",
        "Implement MLA attention, basic MoE layers, and FP8 mixed precision", 6, ("phase_0",),
        ("Multi-head Latent Attention (MLA) implementation",
         "Basic MoE layer with top-k routing",
         "FP8 mixed precision integration",
         "Component-level testing suites",
         "Performance benchmarking framework"),
        _c(("P1.mla_kv_reduction", "MLA achieves 93.3% KV cache reduction"),
           ("P1.moe_functional", "MoE layer functional with load balancing"),
           ("P1.fp8_stable", "FP8 training stable without accuracy loss"),
           ("P1.synthetic_tests", "All tests pass with synthetic data")),
        ("MLA implementation complexity", "FP8 precision numerical instability", "Memory optimization challenges"),
        ("Implement MLA incrementally with validation", "Use gradient scaling for FP8 stability",
         "Extensive memory profiling and optimization"),
        Resources(team_size=4, gpu_hours=500, storage_tb=2, compute_instances=4), 25000.0,
    ),
    _phase(
        2, "Advanced MoE Architecture Implementation",
        "Implement 256 routed + 1 shared expert architecture with auxiliary-loss-free load balancing", 8,
        ("phase_1",),
        ("DeepSeekMoE architecture (256 routed + 1 shared experts)",
         "Auxiliary-loss-free load balancing system",
         "Expert parallelism across multiple nodes",
         "Multi-Token Prediction (MTP) for inference acceleration",
         "Scaled MoE testing and validation framework"),
        _c(("P2.moe_balance", "Expert utilization variance < 5%"),
           ("P2.mtp_speedup", "MTP achieves > 1.5x inference speedup"),
           ("P2.expert_parallel_nodes", "Expert parallelism scales to 8+ nodes"),
           ("P2.balance_stability", "Load balancing maintains training stability")),
        ("Expert routing collapse", "Communication overhead in expert parallelism", "MTP validation complexity"),
        ("Implement bias-based load balancing", "Optimize communication kernels",
         "Extensive MTP testing with multiple validation methods"),
        Resources(team_size=5, gpu_hours=1000, storage_tb=5, compute_instances=8), 50000.0,
    ),
    _phase(
        3, "Distributed Training & Parallelism Implementation",
        "Implement DualPipe parallelism, distributed training strategies, and memory optimization", 8,
        ("phase_2",),
        ("DualPipe bidirectional pipeline parallelism",
         "Custom TensorFlow distributed training strategy",
         "ZeRO-1 optimizer state partitioning",
         "Communication kernel optimization",
         "Distributed training testing framework"),
        _c(("P3.dualpipe_bubbles", "DualPipe reduces pipeline bubbles by > 40%"),
           ("P3.scale_64_gpus", "Distributed training scales to 64+ GPUs"),
           ("P3.optimizer_memory", "Memory optimization reduces optimizer memory by > 50%"),
           ("P3.comm_overhead", "Communication overhead < 20% of training time")),
        ("Pipeline synchronization complexity", "Communication bottlenecks", "Memory management across nodes"),
        ("Implement comprehensive pipeline monitoring", "Use compression for communication optimization",
         "Extensive distributed testing with fault tolerance"),
        Resources(team_size=6, gpu_hours=2000, storage_tb=10, compute_instances=16), 100000.0,
    ),
    _phase(
        4, "Training Pipeline & Data Management",
        "Implement complete training pipeline for 14.8T tokens with monitoring and checkpointing", 10,
        ("phase_3",),
        ("Pre-training data pipeline (14.8T tokens)",
         "Training orchestration and monitoring systems",
         "Distributed checkpointing for 671B parameters",
         "Progressive context extension (4K→32K→128K)",
         "Complete training pipeline validation"),
        _c(("P4.data_throughput", "Data pipeline processes > 10K tokens/sec/worker"),
           ("P4.uptime", "Training stability > 99.9% uptime"),
           ("P4.checkpoint_time", "Checkpoint save/load time < 10 minutes"),
           ("P4.context_extension", "Context extension maintains performance")),
        ("Data pipeline bottlenecks", "Training instability at scale", "Checkpoint corruption risks"),
        ("Implement robust data validation and retry logic", "Comprehensive monitoring with automatic recovery",
         "Redundant checkpointing with integrity validation"),
        Resources(team_size=6, gpu_hours=5000, storage_tb=50, compute_instances=32), 250000.0,
    ),
    _phase(
        5, "Fine-tuning & Alignment Implementation",
        "Implement SFT, GRPO alignment, and knowledge distillation from R1 models", 8, ("phase_4",),
        ("Supervised Fine-Tuning (SFT) with synthetic data",
         "Group Relative Policy Optimization (GRPO)",
         "Knowledge distillation from R1 reasoning models",
         "Chain-of-Thought integration with self-verification",
         "Alignment validation and testing framework"),
        _c(("P5.instruction_following", "Instruction-following accuracy > 85%"),
           ("P5.grpo_no_value_fn", "GRPO achieves alignment without value functions"),
           ("P5.r1_retention", "R1 reasoning capabilities transferred with > 70% retention"),
           ("P5.cot_gain", "CoT improves complex task performance by > 25%")),
        ("Alignment objective conflicts", "Knowledge distillation efficiency", "Reasoning capability degradation"),
        ("Careful balance of alignment objectives", "Progressive distillation with validation",
         "Extensive reasoning capability testing"),
        Resources(team_size=5, gpu_hours=3000, storage_tb=20, compute_instances=16), 150000.0,
    ),
    _phase(
        6, "Production Deployment & Optimization",
        "Deploy model with TensorFlow Serving, implement monitoring, and optimize for production", 6,
        ("phase_5",),
        ("TensorFlow Serving integration with TensorRT",
         "Production infrastructure with auto-scaling",
         "Comprehensive performance monitoring",
         "Model quantization and compression",
         "Production deployment testing framework"),
        _c(("P6.latency_p95", "Inference latency P95 < 2 seconds"),
           ("P6.throughput_per_gpu", "Throughput > 1000 tokens/sec/GPU"),
           ("P6.availability", "Service availability > 99.9%"),
           ("P6.autoscale_time", "Auto-scaling response time < 2 minutes")),
        ("Production scaling challenges", "Performance optimization complexity", "Monitoring system reliability"),
        ("Gradual production rollout with monitoring", "Extensive load testing and optimization",
         "Redundant monitoring with alerting"),
        Resources(team_size=4, gpu_hours=1000, storage_tb=10, compute_instances=20), 75000.0,
    ),
)

# Seed section 2.1: the progress tracker's default milestone ("Additional milestones would be defined here").
TRACKER_MILESTONES: tuple[Milestone, ...] = (
    Milestone(
        "milestone_phase_0", "Development Environment Setup Complete", "phase_0", "seed 2.1",
        _c(("P0.env_conda_tf", "Conda environment configured with TensorFlow 2.15+"),
           ("P0.env_cuda", "GPU acceleration working with CUDA 12.4+"),
           ("P0.test_framework", "Testing framework operational"),
           ("P0.jupyter_workflow", "Jupyter development workflow established")),
        target_date="2024-02-15",
        validation_tests=("test_environment_setup", "test_gpu_acceleration", "test_framework_functionality"),
    ),
)

# Seed section 5: cross-phase success criteria and validation targets.
QA_MILESTONES: tuple[Milestone, ...] = (
    Milestone(
        "QA5.1", "Cross-Phase Quality Requirements", None, "seed 5.1",
        _c(("QA.doc_completeness", "Documentation completeness score > 90% across all phases"),
           ("QA.coverage", "Code coverage > 85% for all components"),
           ("QA.milestone_success_rate", "All milestone validation criteria met with > 95% success rate"),
           ("QA.troubleshooting_coverage", "Troubleshooting guide coverage for > 90% of common issues"),
           ("QA.progress_accuracy", "Progress tracking accuracy within 5% of actual completion")),
    ),
    Milestone(
        "QA5.2", "Integration Requirements", None, "seed 5.2",
        _c(("QA.phase_integration", "Seamless integration between all phases"),
           ("QA.api_consistency", "Consistent API and interface standards"),
           ("QA.e2e_testing", "Comprehensive end-to-end testing"),
           ("QA.cross_phase_performance", "Performance validation across phase boundaries"),
           ("QA.doc_consistency", "Documentation consistency and cross-references")),
    ),
    Milestone(
        "QA5.3", "Quality Assurance Requirements", None, "seed 5.3",
        _c(("QA.automated_checks", "Automated quality checks passing for all deliverables"),
           ("QA.peer_review", "Peer review completion for all major components"),
           ("QA.test_frameworks", "Standardized testing frameworks operational"),
           ("QA.issue_resolution", "Issue resolution time < 48 hours for critical problems"),
           ("QA.knowledge_transfer", "Knowledge transfer documentation complete")),
    ),
)

# Not in the seed: what this project itself must show (ARCHITECTURE.md: the Flax reference under jax.jit
# is the speed peer; MoE cost must follow activated, not total, experts).
PROJECT_MILESTONES: tuple[Milestone, ...] = (
    Milestone(
        "PX", "Project criteria (ARCHITECTURE.md, issue #4; not in the seed)", None, "project",
        _c(("PX.tf_prefill_speed", "TensorFlow prefill throughput at least matches the Flax reference under jax.jit"),
           ("PX.tf_decode_speed", "TensorFlow decode throughput at least matches the Flax reference under jax.jit"),
           ("PX.tf_train_speed", "TensorFlow training step at least as fast as the Flax reference under jax.jit"),
           ("PX.moe_sparsity", "MoE layer time follows activated experts, not total experts (64 vs 8 routed)")),
    ),
)

MILESTONES: tuple[Milestone, ...] = (
    tuple(p.milestone for p in PHASES) + TRACKER_MILESTONES + QA_MILESTONES + PROJECT_MILESTONES
)

CROSS_PHASE = "cross-phase"


def phase_by_id(phase_id: str) -> Phase:
    """The phase with id ``phase_id``; a KeyError that lists the valid ids otherwise."""
    for phase in PHASES:
        if phase.id == phase_id:
            return phase
    raise KeyError(f"unknown phase {phase_id!r}; the roadmap has {[p.id for p in PHASES]}")


def all_criteria() -> dict[str, tuple[Milestone, Criterion]]:
    """Every criterion id -> (its milestone, the criterion), in roadmap order."""
    out: dict[str, tuple[Milestone, Criterion]] = {}
    for milestone in MILESTONES:
        for criterion in milestone.criteria:
            if criterion.id in out:
                raise ValueError(f"criterion id {criterion.id} appears twice (in {out[criterion.id][0].id} "
                                 f"and {milestone.id}); ids must be unique")
            out[criterion.id] = (milestone, criterion)
    return out


@dataclass(frozen=True)
class ScheduledPhase:
    """Earliest start and finish (in weeks from project start) given the dependencies."""

    phase_id: str
    start_week: int
    end_week: int
    on_critical_path: bool = field(default=False)


def schedule(phases: tuple[Phase, ...] = PHASES) -> tuple[ScheduledPhase, ...]:
    """Earliest-start schedule over the dependency graph, with the critical path marked."""
    by_id = {p.id: p for p in phases}
    finish: dict[str, int] = {}

    def end(pid: str, trail: tuple[str, ...] = ()) -> int:
        if pid in trail:
            raise ValueError(f"dependency cycle: {' -> '.join(trail + (pid,))}")
        if pid not in finish:
            deps = by_id[pid].dependencies
            finish[pid] = max((end(d, trail + (pid,)) for d in deps), default=0) + by_id[pid].duration_weeks
        return finish[pid]

    for p in phases:
        end(p.id)
    critical = set(critical_path(phases, finish))
    return tuple(ScheduledPhase(p.id, finish[p.id] - p.duration_weeks, finish[p.id], p.id in critical)
                 for p in phases)


def critical_path(phases: tuple[Phase, ...] = PHASES, finish: dict[str, int] | None = None) -> tuple[str, ...]:
    """The longest dependency chain (phase ids, first to last)."""
    if finish is None:
        return tuple(s.phase_id for s in schedule(phases) if s.on_critical_path)
    by_id = {p.id: p for p in phases}
    path = [max(finish, key=lambda pid: finish[pid])]
    while by_id[path[-1]].dependencies:
        path.append(max(by_id[path[-1]].dependencies, key=lambda pid: finish[pid]))
    return tuple(reversed(path))


@dataclass(frozen=True)
class Totals:
    """Whole-roadmap roll-ups (see ``totals``): peaks for team and instances, sums for cost and GPU hours."""

    duration_weeks: int
    estimated_cost: float
    gpu_hours: int
    max_team_size: int
    storage_tb: int
    max_compute_instances: int


def totals(phases: tuple[Phase, ...] = PHASES) -> Totals:
    """Roll-ups as the seed defines them: duration along the critical path, summed cost, GPU hours, storage."""
    return Totals(
        duration_weeks=max(s.end_week for s in schedule(phases)),
        estimated_cost=sum(p.estimated_cost for p in phases),
        gpu_hours=sum(p.resources.gpu_hours for p in phases),
        max_team_size=max(p.resources.team_size for p in phases),
        storage_tb=sum(p.resources.storage_tb for p in phases),
        max_compute_instances=max(p.resources.compute_instances for p in phases),
    )
