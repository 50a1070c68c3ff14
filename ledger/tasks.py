from celery import shared_task


@shared_task
def settle_due_orders_task() -> int:
    from ledger import services

    return services.settle_due_orders()
