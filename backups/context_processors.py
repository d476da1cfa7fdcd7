from django.conf import settings


def dashboard(request):
    """What every page shows in its frame: whether this is the demo."""
    return {"dcs_demo": settings.DCS_DEMO}
