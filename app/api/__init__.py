"""HTTP routes: one APIRouter per domain."""
