"""The service: the daemon and its cycle (reference -> check -> record -> publish), the
consequences (decide -> alert -> retrain), the scheduler, the retrain hand-off, the reference
cache, and the commands behind the command line."""
